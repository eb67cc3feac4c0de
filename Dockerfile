# permed: the command line and the service in one image (docs/install.md, "Docker").
#   docker build -t permed .
#   docker run --rm -v "$PWD:/work" permed call /work/patient.vcf.gz -o /work/out
#   docker run -d -p 8000:8000 -v permed-data:/data permed            # permed serve on :8000
# Stage 1 builds wheels for permed[all] at the versions constraints.txt locks; stage 2 installs them without
# a compiler or the network, and runs as an unprivileged user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir -c constraints.txt -w /wheels '.[all]'

FROM python:3.11-slim
# pango: WeasyPrint's text layout (PDF reports); fonts-wqy-zenhei: Chinese reports
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 fonts-wqy-zenhei \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'permed[all]' && rm -rf /wheels \
 && useradd --create-home --uid 10001 permed && mkdir /data && chown permed /data
USER permed
WORKDIR /home/permed
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c \
  "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/v1/health', timeout=4)" || exit 1
ENTRYPOINT ["permed"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--data-dir", "/data"]
