# memstream: one image for the embedded server and the Kafka workers.
FROM python:3.11-slim

WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
# The CPU build of torch first: any other resolution pulls several GB of CUDA wheels.
RUN pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY memstream memstream
COPY schemas schemas
COPY streams streams
COPY projections projections
RUN pip install .

RUN useradd --create-home memstream && mkdir /data && chown memstream /data
USER memstream
VOLUME ["/data"]
EXPOSE 6066 8765
ENTRYPOINT ["memstream"]
CMD ["--help"]
