package deploy

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// productionSection is the README's "## Production" section.
func productionSection(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i := strings.Index(s, "\n## Production\n")
	if i < 0 {
		t.Fatal("README.md has no Production section")
	}
	s = s[i+1:]
	if j := strings.Index(s[3:], "\n## "); j >= 0 {
		s = s[:j+3]
	}
	return s
}

// TestReadmeProduction: the commands of the README's production section are
// the ones the tests run and check: the nats-server command lines are built
// by the cluster test's own nodeArgs, the service lines set the variables it
// sets, the scaled services are scalable in the compose file, and make
// images is the documented docker build.
func TestReadmeProduction(t *testing.T) {
	readme := productionSection(t)
	lines := strings.Split(readme, "\n")

	var nodes []node
	for i := range 3 {
		nodes = append(nodes, node{name: fmt.Sprintf("nats-%d", i+1), client: 4222 + i, monitor: 8222 + i, cluster: 6222 + i})
	}
	for _, n := range nodes {
		want := fmt.Sprintf("NATS_SERVER_NAME=%s NATS_STORE_DIR=data/%s bin/nats-server %s &",
			n.name, n.name, strings.Join(nodeArgs("deploy/nats-cluster.conf", n, nodes), " "))
		if !slices.Contains(lines, want) {
			t.Errorf("README lacks the line the cluster test runs for %s:\n%s", n.name, want)
		}
	}
	for _, u := range users {
		if !strings.Contains(readme, "export ") || !regexp.MustCompile(`export .*\b`+u.passwordVar+`=`).MatchString(readme) {
			t.Errorf("README does not export %s for nats-server and the services", u.passwordVar)
		}
	}
	// One replica setting for every service, as the cluster test sets it.
	if !regexp.MustCompile(`(?m)^export STREAM_REPLICAS=3$`).MatchString(readme) {
		t.Error("README does not export STREAM_REPLICAS=3 for the services")
	}
	for _, svc := range services {
		re := regexp.MustCompile(fmt.Sprintf(`(?m)^%s_NATS_URL=nats://127\.0\.0\.1:422[2-4] %s_NATS_USER=%s %s=127\.0\.0\.1:\d+ .*bin/%s &$`,
			svc.prefix, svc.prefix, regexp.QuoteMeta(svc.user), svc.httpAddr, regexp.QuoteMeta(svc.name)))
		if !re.MatchString(readme) {
			t.Errorf("README lacks the %s command line the cluster test runs (%s)", svc.name, re)
		}
	}

	if !strings.Contains(readme, "\nmake images ") {
		t.Error("README does not show make images")
	}
	makefile, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(makefile), "docker build --build-arg SERVICE=$$s -t chat-$$s .") ||
		!strings.Contains(readme, "docker build --build-arg SERVICE=<service> -t chat-<service> .") {
		t.Error("make images and the README's docker build differ")
	}
	scales := regexp.MustCompile(`(?m)^docker compose up( --scale [a-z-]+=\d+)+$`).FindAllString(readme, -1)
	if len(scales) == 0 {
		t.Fatal("README shows no docker compose up --scale")
	}
	for _, line := range scales {
		for _, m := range regexp.MustCompile(`--scale ([a-z-]+)=`).FindAllStringSubmatch(line, -1) {
			if !slices.Contains(scalable, m[1]) {
				t.Errorf("README scales %s, which TestCompose does not check as scalable", m[1])
			}
		}
	}
	if !slices.Contains(lines, "docker compose up --scale bot=3 --scale sms-worker=3 --scale history=2") {
		t.Error("README lacks the scale-out command of the issue")
	}
}
