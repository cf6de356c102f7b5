package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/natschat/chat/shared/testkit"
)

// Helpers that run the chat as real processes: binaries built once per test
// run by gobuild.sh (as the images build them), each process logging to a
// file, stopped when the test ends, also when it fails.

func TestMain(m *testing.M) { testkit.Main(m) }

// binary is the path of name (a service, healthprobe or nats-server), built
// by gobuild.sh once per test run.
func binary(t *testing.T, name string) string {
	t.Helper()
	return testkit.Build(t, name, func(out string) *exec.Cmd {
		return exec.Command("sh", "gobuild.sh", name, filepath.Dir(out))
	})
}

// start runs bin with args and exactly env (plus PATH), logging to a file
// in logDir as well. The test's cleanup stops it.
func start(t *testing.T, logDir, name, bin string, env []string, args ...string) *testkit.Process {
	t.Helper()
	f, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() }) // after the process is stopped
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	cmd.Stdout = f
	return testkit.StartCmd(t, name, cmd)
}

// kill ends p with SIGKILL: it gets no chance to drain.
func kill(t *testing.T, p *testkit.Process) {
	t.Helper()
	p.Kill(t)
	t.Logf("killed %s (SIGKILL)", p.Name)
}

// waitReady waits up to timeout for url to answer 2xx while p runs.
func waitReady(t *testing.T, p *testkit.Process, url string, timeout time.Duration) {
	t.Helper()
	testkit.WaitForState(t, timeout, p.Name+" ready at "+url, func() (bool, string) {
		if p.Exited() {
			t.Fatalf("%s exited: %v", p.Name, p.Err())
		}
		status, _, err := testkit.Get(url)
		return status/100 == 2, strconv.Itoa(status) + " " + errText(err)
	})
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func itoa(n int) string { return strconv.Itoa(n) }
