# Berth's daemon as a container. It manages containers on the engine whose socket is
# mounted at /var/run/docker.sock, and needs BERTH_DATABASE_URL (the embedded Postgres is
# for single-host trials, not for a container whose filesystem is thrown away).
#   docker build -t berth .
#   docker run -d -v /var/run/docker.sock:/var/run/docker.sock \
#     -e BERTH_DATABASE_URL=postgresql://... -e BERTH_HTTP_ADDR=0.0.0.0:9321 berth
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 BERTH_LOG_FORMAT=json
WORKDIR /opt/berth
COPY pyproject.toml README.md ./
COPY controller ./controller
RUN pip install . && useradd --system --no-create-home berth
# Talking to the Docker socket needs its group; run with --group-add $(stat -c %g /var/run/docker.sock).
USER berth
EXPOSE 9321 9380
HEALTHCHECK --interval=15s --timeout=3s CMD python -c "import urllib.request,os; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('BERTH_HTTP_ADDR','127.0.0.1:9321').rsplit(':',1)[1] + '/healthz')"
ENTRYPOINT ["berth"]
CMD ["run"]
