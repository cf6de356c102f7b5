# One small static image per service, built from the repository root so that
# shared/, web/ and deploy/ are in the context:
#   docker build --build-arg SERVICE=gateway -t chat-gateway .
# (make images builds all of them.) SERVICE is one of: gateway, history, bot,
# sms-worker, accounts, allinone. The binary is built by deploy/gobuild.sh, as the
# deploy tests build the processes they run.
FROM golang:1.26 AS build
ARG SERVICE=gateway
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    sh deploy/gobuild.sh "$SERVICE" /out && \
    sh deploy/gobuild.sh healthprobe /out && \
    mv "/out/$SERVICE" /out/service

# Distroless static: no shell, no package manager, a non-root user (65532).
# Health checks run /healthprobe <url>.
FROM gcr.io/distroless/static-debian12:nonroot
# The gateway listens on localhost by default (for make run); a container
# must listen on every interface to be reachable.
ENV GATEWAY_ADDR=:8080
COPY --from=build /out/service /service
COPY --from=build /out/healthprobe /healthprobe
USER nonroot:nonroot
ENTRYPOINT ["/service"]
