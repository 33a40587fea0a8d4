# The orchestrator in a container: paper trading by default (DELTA_API_KEY / DELTA_API_SECRET in
# the environment switch a live config to the exchange). Built by docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ORCHESTRATE_RUN_DIR=/run-dir

WORKDIR /src
# What `pip install .` reads (tests/orchestrator/test_deploy.py installs from exactly these).
COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
COPY workers ./workers
COPY shared ./shared
COPY configs /etc/orchestrate
RUN pip install . && rm -rf /src

# Not root: the run dir (ledger, logs, paper account, sockets) is the only place it writes.
RUN useradd --create-home --uid 10001 trader && mkdir /run-dir && chown trader:trader /run-dir
USER trader
WORKDIR /home/trader
VOLUME ["/run-dir"]
# Prometheus metrics (loopback only: the compose file runs Prometheus in this container's network)
EXPOSE 9464

ENTRYPOINT ["orchestrate"]
CMD ["--config", "/etc/orchestrate/default.toml", "--no-display", "--metrics-port", "9464"]
