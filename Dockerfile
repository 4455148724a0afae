# contrastive-hpo worker image: `hpo` on a slim Python with a CUDA build of PyTorch.
#
#   docker build -t contrastive-hpo .
#   docker run --rm --gpus all -e HPO_STORAGE_URL -v hpo-artifacts:/data contrastive-hpo \
#       worker studies/quickstart.yaml --gpus all --set 'storage=${HPO_STORAGE_URL}' \
#       --set artifacts.dir=/data/artifacts
#
# The image runs as an unprivileged user that cannot write under /app: give artifacts.dir
# (and a study's save_dir) a mounted volume, as docker-compose.yml does.
#
# The PyTorch wheels bring their own CUDA runtime; the host needs only the NVIDIA driver
# and the NVIDIA Container Toolkit. TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# builds a CPU-only image.
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# PyTorch first, from its own index, so the layer is reused across code changes.
RUN pip install --index-url "${TORCH_INDEX_URL}" torch

COPY pyproject.toml README.md ./
COPY hpo ./hpo
COPY trainers ./trainers
# grpcio/protobuf: `hpo storage-proxy` and grpc:// storages; s3: artifacts.dir=s3://...
RUN pip install ".[postgres,s3]" grpcio protobuf
COPY studies ./studies

# Never run as root; trial outputs and SQLite files go to /data (mount a volume there).
RUN useradd --create-home --uid 10001 --user-group hpo \
    && mkdir -p /data \
    && chown hpo:hpo /data
USER hpo
ENV HOME=/home/hpo

ENTRYPOINT ["hpo"]
CMD ["--help"]
