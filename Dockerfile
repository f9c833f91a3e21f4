# One worker per container; scale with `docker compose up --scale worker=N`.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY martian_doves ./martian_doves
RUN pip install --no-cache-dir '.[postgres]' && useradd --create-home doves && mkdir /states && chown doves /states
USER doves

# Every option of `doves` reads a DOVES_* variable, so compose files need no command lines.
ENV DOVES_STORE=/states \
    DOVES_WORKERS=1 \
    PYTHONUNBUFFERED=1
VOLUME ["/states"]
ENTRYPOINT ["doves"]
CMD ["run"]
