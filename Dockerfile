# The fedsyn project image: every service of docker-compose.yml (SuperLink, SuperNodes, runner) runs it.
FROM python:3.11-slim

# CPU-only torch wheels keep the image small; set --build-arg PIP_EXTRA_INDEX_URL= to use PyPI's default.
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL} \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    FLWR_TELEMETRY_ENABLED=0 \
    FLWR_DISABLE_UPDATE_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY configs ./configs
COPY attacks ./attacks
COPY fedsyn ./fedsyn
RUN pip install . && mkdir -p /results
