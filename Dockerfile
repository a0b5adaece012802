# AstroPT service image: the same image runs the API (`astropt api`) and the workers
# (`astropt worker`). By default pip installs the CUDA build of PyTorch from PyPI (what GPU
# workers need); for a small CPU-only image build with
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ASTROPT_DATA_DIR=/data \
    HF_HOME=/data/hf-cache \
    MPLBACKEND=Agg

ARG TORCH_INDEX_URL=""
WORKDIR /app

COPY pyproject.toml README.md ./
COPY astropt ./astropt
COPY state ./state
COPY service ./service
COPY worker ./worker
COPY broker ./broker
RUN if [ -n "$TORCH_INDEX_URL" ]; then pip install torch --index-url "$TORCH_INDEX_URL"; fi \
 && pip install ".[service]"

RUN useradd --create-home --uid 1000 astropt && mkdir -p /data && chown astropt /data
USER astropt
VOLUME ["/data"]
EXPOSE 8000

CMD ["astropt", "api", "--host", "0.0.0.0", "--port", "8000"]
