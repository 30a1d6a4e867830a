"""Periodic sweeps (dispatch, retry, lease reaper) and the beat schedule that drives them."""
