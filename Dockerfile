# Coverslip in a container: the web application (default) or the thumbnail service.
#
#   docker build -t coverslip .
#   docker run -d --name coverslip-web    -v coverslip:/var/lib/coverslip -p 4080:4080 coverslip
#   docker run -d --name coverslip-thumbs -v coverslip:/var/lib/coverslip -p 4081:4081 coverslip thumbs
#   docker run --rm -v coverslip:/var/lib/coverslip coverslip user ...   # any coverslip command
#
# Settings come from COVERSLIP_* variables (docs/configuration.md); see docs/deployment.md.

# The viewer's OpenSeadragon, from the npm lock file.
FROM node:20-bookworm-slim AS assets
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/coverslip coverslip
WORKDIR /opt/coverslip
COPY pyproject.toml README.md ./
COPY src ./src
COPY --from=assets /src/node_modules/openseadragon/build/openseadragon/openseadragon.min.js \
     ./src/coverslip/web/static/vendor/openseadragon/
COPY --from=assets /src/node_modules/openseadragon/build/openseadragon/images \
     ./src/coverslip/web/static/vendor/openseadragon/images
# Granian comes with Coverslip; Gunicorn (gthread or gevent workers) is there to choose.
RUN pip install . gunicorn gevent

USER coverslip
# In a container: production mode, listen on every address, log to the container's output.
ENV COVERSLIP_HOME=/var/lib/coverslip \
    COVERSLIP_WEB_ENV=production \
    COVERSLIP_WEB_HOST=0.0.0.0 \
    COVERSLIP_THUMBS_HOST=0.0.0.0 \
    COVERSLIP_WEB_ACCESS_LOG=- \
    COVERSLIP_WEB_ERROR_LOG=- \
    COVERSLIP_THUMBS_ACCESS_LOG=- \
    COVERSLIP_THUMBS_ERROR_LOG=-
VOLUME /var/lib/coverslip
EXPOSE 4080 4081
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD ["python", "-m", "coverslip.deploy.entrypoint", "healthz"]
ENTRYPOINT ["python", "-m", "coverslip.deploy.entrypoint"]
CMD ["web"]
