package deploy

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// service is one of the chat's own services as deployed.
type service struct {
	name     string // compose service, image suffix, binary and SERVICE build argument
	prefix   string // environment prefix
	user     string // NATS user in auth.conf
	httpAddr string // variable of the HTTP address serving /readyz and /metrics
	port     string // its port in the containers
}

var services = []service{
	{"gateway", "GATEWAY", "gateway", "GATEWAY_ADDR", "8080"},
	{"history", "HISTORY", "history", "HISTORY_ADMIN_ADDR", "9090"},
	{"bot", "BOT", "bot", "BOT_ADMIN_ADDR", "9090"},
	{"sms-worker", "SMSWORKER", "sms-worker", "SMSWORKER_ADMIN_ADDR", "9090"},
	{"accounts", "ACCOUNTS", "accounts", "ACCOUNTS_ADMIN_ADDR", "9090"},
}

// scalable are the services the README scales with --scale.
var scalable = []string{"history", "bot", "sms-worker", "accounts"}

// loadCompose loads ../docker-compose.yml as docker compose does: schema
// validation, interpolation with the given environment (none: the defaults
// in the file), normalisation and consistency checks.
func loadCompose(t *testing.T, env ...string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{"../docker-compose.yml"},
		cli.WithWorkingDirectory(".."),
		cli.WithEnv(env),
		cli.WithConsistency(true),
		cli.WithNormalization(true),
		cli.WithInterpolation(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatalf("compose options: %v", err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	return p
}

func env(s types.ServiceConfig, key string) string {
	v, ok := s.Environment[key]
	if !ok || v == nil {
		return ""
	}
	return *v
}

func TestCompose(t *testing.T) {
	p := loadCompose(t)
	if p.Name != "chat" {
		t.Errorf("project name %q, want chat", p.Name)
	}
	var names []string
	for name := range p.Services {
		names = append(names, name)
	}
	slices.Sort(names)
	if want := []string{"accounts", "bot", "gateway", "history", "nats", "postgres", "sms-worker"}; !slices.Equal(names, want) {
		t.Fatalf("services %v, want %v", names, want)
	}

	nats := p.Services["nats"]
	t.Run("nats", func(t *testing.T) {
		if cmd := strings.Join(nats.Command, " "); cmd != "-c /etc/nats/nats.conf" {
			t.Errorf("nats command %q, want -c /etc/nats/nats.conf", cmd)
		}
		mounts := map[string]string{}
		for _, v := range nats.Volumes {
			mounts[v.Target] = v.Source
		}
		for target, file := range map[string]string{"/etc/nats/nats.conf": "deploy/nats.conf", "/etc/nats/auth.conf": "deploy/auth.conf"} {
			if !strings.HasSuffix(mounts[target], file) {
				t.Errorf("%s mounted from %q, want %s", target, mounts[target], file)
			}
		}
		if nats.HealthCheck == nil || !strings.Contains(strings.Join(nats.HealthCheck.Test, " "), "healthz?js-enabled-only=true") {
			t.Errorf("nats health check %v, want the JetStream health endpoint", nats.HealthCheck)
		}
		for _, u := range users {
			if env(nats, u.passwordVar) == "" {
				t.Errorf("nats has no %s for auth.conf", u.passwordVar)
			}
		}
	})
	pg := p.Services["postgres"]
	if pg.HealthCheck == nil || len(pg.Volumes) == 0 {
		t.Error("postgres needs a health check and a volume")
	}

	for _, svc := range services {
		t.Run(svc.name, func(t *testing.T) {
			s := p.Services[svc.name]
			if s.Build == nil || s.Build.Context != p.WorkingDir {
				t.Errorf("build context %v, want the repository root %s (shared/ must be in it)", s.Build, p.WorkingDir)
			} else if arg := s.Build.Args["SERVICE"]; arg == nil || *arg != svc.name {
				t.Errorf("build argument SERVICE %v, want %s", arg, svc.name)
			}
			if s.Image != "chat-"+svc.name {
				t.Errorf("image %q, want chat-%s", s.Image, svc.name)
			}
			// Its own NATS user, with the password the server is given.
			for key, want := range map[string]string{
				"_NATS_URL":      "nats://nats:4222",
				"_NATS_USER":     svc.user,
				"_NATS_PASSWORD": env(nats, svc.prefix+"_NATS_PASSWORD"),
				"_LOG_FORMAT":    "json",
			} {
				if got := env(s, svc.prefix+key); got != want || want == "" {
					t.Errorf("%s%s = %q, want %q", svc.prefix, key, got, want)
				}
			}
			if got := env(s, "STREAM_REPLICAS"); got != "1" {
				t.Errorf("STREAM_REPLICAS = %q, want 1", got)
			}
			if addr := env(s, svc.httpAddr); addr != ":"+svc.port {
				t.Errorf("%s = %q, want :%s", svc.httpAddr, addr, svc.port)
			}
			hc := s.HealthCheck
			if hc == nil || !slices.Equal([]string(hc.Test), []string{"CMD", "/healthprobe", "http://127.0.0.1:" + svc.port + "/readyz"}) {
				t.Errorf("health check %v, want /healthprobe on its /readyz", hc)
			}
			if dep, ok := s.DependsOn["nats"]; !ok || dep.Condition != types.ServiceConditionHealthy {
				t.Errorf("depends_on nats %+v, want condition service_healthy", dep)
			}
			if s.Restart != "unless-stopped" {
				t.Errorf("restart %q, want unless-stopped", s.Restart)
			}
		})
	}

	for _, svc := range []string{"history", "accounts"} {
		t.Run(svc+" database", func(t *testing.T) {
			s := p.Services[svc]
			if dep := s.DependsOn["postgres"]; dep.Condition != types.ServiceConditionHealthy {
				t.Errorf("depends_on postgres %+v, want service_healthy", dep)
			}
			key := strings.ToUpper(svc) + "_DATABASE_URL"
			u, err := url.Parse(env(s, key))
			if err != nil {
				t.Fatal(err)
			}
			pw, _ := u.User.Password()
			if u.Host != "postgres:5432" || u.User.Username() != env(pg, "POSTGRES_USER") || pw != env(pg, "POSTGRES_PASSWORD") || u.Path != "/"+env(pg, "POSTGRES_DB") {
				t.Errorf("%s %s does not match the postgres service", key, u.Redacted())
			}
		})
	}

	// docker compose up --scale: a fixed container name or host port would
	// make the second replica fail.
	for _, name := range scalable {
		s := p.Services[name]
		if s.ContainerName != "" {
			t.Errorf("%s has container_name %q: it cannot scale", name, s.ContainerName)
		}
		for _, port := range s.Ports {
			if port.Published != "" {
				t.Errorf("%s publishes host port %s: it cannot scale", name, port.Published)
			}
		}
	}
}

// TestComposeEnvOverrides: production passwords and the replica count come
// from the environment (.env) and reach both nats-server and the services.
func TestComposeEnvOverrides(t *testing.T) {
	p := loadCompose(t, "BOT_NATS_PASSWORD=prod-secret", "STREAM_REPLICAS=3", "POSTGRES_PASSWORD=pgsecret")
	if got := env(p.Services["nats"], "BOT_NATS_PASSWORD"); got != "prod-secret" {
		t.Errorf("nats BOT_NATS_PASSWORD %q, want prod-secret", got)
	}
	if got := env(p.Services["bot"], "BOT_NATS_PASSWORD"); got != "prod-secret" {
		t.Errorf("bot BOT_NATS_PASSWORD %q, want prod-secret", got)
	}
	for _, svc := range services {
		if got := env(p.Services[svc.name], "STREAM_REPLICAS"); got != "3" {
			t.Errorf("%s: STREAM_REPLICAS %q, want 3", svc.name, got)
		}
	}
	if got := env(p.Services["history"], "HISTORY_DATABASE_URL"); !strings.Contains(got, ":pgsecret@") {
		t.Errorf("HISTORY_DATABASE_URL %q does not use POSTGRES_PASSWORD", got)
	}
}
