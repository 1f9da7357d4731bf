# Backprop Lab: the dashboard on port 8000.
# docker build -t backprop-lab . && docker run -p 8000:8000 -v backprop-data:/data backprop-lab
# The image is also a Dask worker for sweeps (dask[distributed] is a dependency, so `dask` is on
# the PATH next to the project): docker run --network host backprop-lab dask worker
# tcp://SCHEDULER:8786 --nthreads 1   (README, "Growing: Dask"; any command replaces CMD).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# The wheel carries the page (static/, templates/) as package data: the source is not kept.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY server ./server
COPY static ./static
COPY templates ./templates
RUN pip install --no-cache-dir . && cd / && rm -rf /src \
    && useradd --create-home lab && mkdir /data && chown lab /data
USER lab
WORKDIR /home/lab
VOLUME /data
EXPOSE 8000
# Binding 0.0.0.0 requires a token: set BACKPROP_TOKEN, or one is generated and printed at start.
CMD ["backprop-lab", "serve", "--host", "0.0.0.0", "--port", "8000", "--data-dir", "/data"]
