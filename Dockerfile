FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# CPU-only PyTorch first, so the packages below do not pull the CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY proto/ ./proto/
COPY client/ ./client/
COPY indexer/ ./indexer/
COPY server/ ./server/
COPY samples/ ./samples/

# Order matters: each package depends on the ones before it.
RUN pip install ./proto ./client ./indexer "./server[milvus]"

ENV HF_HUB_OFFLINE=1 \
    NEARDEX_DATA_DIR=/data

# The server runs as an unprivileged user that owns only its data folder.
RUN useradd --system --uid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin neardex \
    && mkdir -p /data && chown neardex:neardex /data
USER neardex

VOLUME /data
EXPOSE 50051 50052

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import grpc; from grpc_health.v1 import health_pb2, health_pb2_grpc; ch = grpc.insecure_channel('localhost:50051'); r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=''), timeout=3); raise SystemExit(0 if r.status == health_pb2.HealthCheckResponse.SERVING else 1)"

CMD ["neardex", "serve", "--data-dir", "/data", "--host", "0.0.0.0", "--port", "50051", "--metrics-port", "50052"]
