# One image per service, built from the repository root so that shared/ and
# web/ are in the context:
#   docker build --build-arg SERVICE=gateway -t chat-gateway .
# SERVICE is one of: gateway, history, bot, sms-worker, allinone.
FROM golang:1.26 AS build
ARG SERVICE=gateway
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    case "$SERVICE" in \
      gateway)    pkg=./services/gateway/cmd/gateway ;; \
      history)    pkg=./services/history/cmd/history ;; \
      bot)        pkg=./services/bot/cmd/bot ;; \
      sms-worker) pkg=./services/smsworker/cmd/sms-worker ;; \
      allinone)   pkg=./services/allinone ;; \
      *) echo "unknown SERVICE $SERVICE" >&2; exit 1 ;; \
    esac && \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/service "$pkg"

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/service /service
USER nonroot:nonroot
ENTRYPOINT ["/service"]
