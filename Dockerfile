# One image for every taskledger role (migrate, worker, beat, api, flower); docker-compose.yml
# picks the command. Your own tasks: build FROM this image, COPY your package in and set
# TASKLEDGER_IMPORTS (README, "Docker compose").
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY models ./models
COPY jobs ./jobs
COPY workers ./workers
COPY beat ./beat
COPY api ./api
COPY mcp_server ./mcp_server
COPY cli ./cli
COPY embedded ./embedded
RUN pip install --no-cache-dir . && useradd --create-home taskledger
USER taskledger
CMD ["taskledger", "--help"]
