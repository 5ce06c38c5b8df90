# Berth's daemon as a container, built without a registry by deploy/build-image.sh: FROM a
# Debian 12 base made by debootstrap and `docker import`, with Berth installed from wheels
# built on the host (nothing is downloaded inside the build).
#   bash deploy/build-image.sh                    # -> berth:local
#   docker run -d -v /var/run/docker.sock:/var/run/docker.sock \
#     --group-add "$(stat -c %g /var/run/docker.sock)" -v berth-data:/var/lib/berth berth:local
# Without BERTH_DATABASE_URL it runs its embedded Postgres in /var/lib/berth (keep that in
# a volume); with one, it uses that server.
ARG BASE_IMAGE=berth-base/debian:bookworm
FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 BERTH_LOG_FORMAT=json \
    PATH=/opt/berth/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY build/wheels /tmp/wheels
RUN python3 -m venv /opt/berth/.venv \
    && /opt/berth/.venv/bin/pip install --quiet --no-index --find-links /tmp/wheels berth \
    && rm -rf /tmp/wheels \
    && useradd --system --home-dir /var/lib/berth --shell /usr/sbin/nologin berth \
    && mkdir -p /var/lib/berth && chown berth:berth /var/lib/berth
VOLUME /var/lib/berth
# Talking to the Docker socket needs its group: run with --group-add <the socket's gid>.
USER berth
WORKDIR /var/lib/berth
EXPOSE 9321 9380
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s CMD python3 -c "import urllib.request,os; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('BERTH_HTTP_ADDR','127.0.0.1:9321').rsplit(':',1)[1] + '/healthz')"
ENTRYPOINT ["tini", "--", "berth"]
CMD ["run"]
