package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"
)

// yamlDocs parses every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// dig walks nested maps and lists: dig(v, "spec", "template", 0, ...).
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// TestHelmValues: the values for the official NATS chart ask for a
// three-node JetStream cluster and carry exactly the users and permissions
// of auth.conf, with the passwords from the chat-nats secret.
func TestHelmValues(t *testing.T) {
	docs := yamlDocs(t, "k8s/nats-values.yaml")
	if len(docs) != 1 {
		t.Fatalf("%d documents, want 1", len(docs))
	}
	v := docs[0]
	if dig(v, "config", "cluster", "enabled") != true || dig(v, "config", "cluster", "replicas") != 3 {
		t.Error("want config.cluster enabled with 3 replicas")
	}
	if dig(v, "config", "jetstream", "enabled") != true || dig(v, "config", "jetstream", "fileStore", "pvc", "size") == nil {
		t.Error("want JetStream with a file store on a persistent volume")
	}
	for _, u := range users {
		if ref := dig(v, "container", "env", u.passwordVar, "valueFrom", "secretKeyRef", "name"); ref != "chat-nats" {
			t.Errorf("container.env.%s from secret %v, want chat-nats", u.passwordVar, ref)
		}
	}

	// The merge section as a NATS config file (JSON is valid NATS config;
	// the chart's << $VAR >> is the variable reference $VAR).
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // the NATS parser knows no \u escapes
	if err := enc.Encode(dig(v, "config", "merge")); err != nil {
		t.Fatal(err)
	}
	merge := buf.Bytes()
	conf := regexp.MustCompile(`"<< (\$[A-Z_]+) >>"`).ReplaceAll(merge, []byte("$1"))
	path := filepath.Join(t.TempDir(), "merge.conf")
	if err := os.WriteFile(path, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	setPasswords(t)
	fromHelm, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("the chart's merge section as NATS config: %v\n%s", err, conf)
	}
	fromAuth, err := server.ProcessConfigFile("nats.conf")
	if err != nil {
		t.Fatal(err)
	}
	checkAccounts(t, fromHelm)
	want := map[string]*server.User{}
	for _, u := range fromAuth.Users {
		want[u.Username] = u
	}
	for _, u := range fromHelm.Users {
		w := want[u.Username]
		if w == nil || u.Password != w.Password || !reflect.DeepEqual(u.Permissions, w.Permissions) {
			t.Errorf("user %s: permissions differ from auth.conf:\nhelm %+v\nauth %+v", u.Username, perms(u), perms(w))
		}
	}
}

func perms(u *server.User) string {
	if u == nil || u.Permissions == nil {
		return "none"
	}
	b, _ := json.Marshal(u.Permissions)
	return string(b)
}

// TestKubernetesManifests: every service is a Deployment on its own NATS
// user with its password from the secret, 3 JetStream replicas, and probes
// on /readyz and /healthz; kustomize lists the manifests.
func TestKubernetesManifests(t *testing.T) {
	k := yamlDocs(t, "k8s/kustomization.yaml")
	for _, r := range dig(k[0], "resources").([]any) {
		if _, err := os.Stat(filepath.Join("k8s", r.(string))); err != nil {
			t.Errorf("kustomization resource %v: %v", r, err)
		}
	}
	deployments := map[string]map[string]any{}
	for _, doc := range yamlDocs(t, "k8s/chat.yaml") {
		if doc["kind"] == "Deployment" {
			deployments[dig(doc, "metadata", "name").(string)] = doc
		}
	}
	for _, svc := range services {
		t.Run(svc.name, func(t *testing.T) {
			d := deployments[svc.name]
			if d == nil {
				t.Fatal("no Deployment")
			}
			c := dig(d, "spec", "template", "spec", "containers", 0)
			if img := dig(c, "image"); img != "chat-"+svc.name {
				t.Errorf("image %v, want chat-%s", img, svc.name)
			}
			env := map[string]any{}
			for _, e := range dig(c, "env").([]any) {
				env[dig(e, "name").(string)] = e
			}
			checks := map[string]any{
				svc.prefix + "_NATS_USER": svc.user,
				"STREAM_REPLICAS":         "3",
				svc.httpAddr:              ":" + svc.port,
			}
			for name, want := range checks {
				if got := dig(env[name], "value"); got != want {
					t.Errorf("%s = %v, want %v", name, got, want)
				}
			}
			if key := dig(env[svc.prefix+"_NATS_PASSWORD"], "valueFrom", "secretKeyRef", "key"); key != svc.user {
				t.Errorf("%s_NATS_PASSWORD from secret key %v, want %s", svc.prefix, key, svc.user)
			}
			for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
				if got := dig(c, probe, "httpGet", "path"); got != path {
					t.Errorf("%s path %v, want %s", probe, got, path)
				}
			}
		})
	}
}
