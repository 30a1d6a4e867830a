# One image for every taskledger role (migrate, worker, beat, flower); docker-compose.yml picks the command.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY models ./models
COPY jobs ./jobs
COPY workers ./workers
COPY beat ./beat
COPY cli ./cli
RUN pip install --no-cache-dir . && useradd --create-home taskledger
USER taskledger
CMD ["taskledger", "--help"]
