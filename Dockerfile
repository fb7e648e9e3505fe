# chat2api in a container (README, "Deployment"; docker-compose.yml runs two
# instances over one Redis). Listens on 0.0.0.0 inside the container: publish
# its ports on 127.0.0.1 only, as docker-compose.yml does.
# Python 3.11 runs mitmproxy 11.0.2; --build-arg PYTHON=3.12 (or 3.13) gets
# mitmproxy 12 (requirements.txt chooses by version; README "Python and mitmproxy").
ARG PYTHON=3.11
FROM python:${PYTHON}-slim
WORKDIR /app
COPY requirements.txt .
# The virtual environment run.sh expects, with its stamp, so it installs nothing at start.
RUN python -m venv .venv \
 && .venv/bin/pip install --no-cache-dir --disable-pip-version-check -r requirements.txt \
 && sha256sum requirements.txt | cut -d' ' -f1 > .venv/.installed
COPY . .
ENV HOST=0.0.0.0 \
    CONFDIR=/conf \
    DATA_DIR=/data
EXPOSE 5005 8080
CMD ["./run.sh"]
