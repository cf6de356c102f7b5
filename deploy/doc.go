// Package deploy holds no code of the chat: it tests the production
// configuration in this folder (NATS configs, docker-compose.yml, Kubernetes
// files) and runs the whole stack as separate processes on a three-node NATS
// cluster. The healthprobe command is the containers' health check.
package deploy
