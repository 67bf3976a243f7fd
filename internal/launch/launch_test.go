package launch

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestEncodeCarriesTheSettings(t *testing.T) {
	s := &Settings{Mode: Plan, Parallelism: 3, Config: map[string]string{"parallelism.default": "3"}, Quiet: true}
	v, err := Encode(s, "/tmp/plan.json", "/tmp/result.json")
	if err != nil {
		t.Fatal(err)
	}
	var w wire
	if err := json.Unmarshal([]byte(v), &w); err != nil {
		t.Fatal(err)
	}
	if w.Mode != Plan || w.Parallelism != 3 || w.Config["parallelism.default"] != "3" || !w.Quiet ||
		w.PlanFile != "/tmp/plan.json" || w.ResultFile != "/tmp/result.json" {
		t.Fatalf("decoded %+v from %s", w, v)
	}
}

func TestReadResult(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "result.json")
	if _, ok := ReadResult(file); ok {
		t.Fatal("a missing result file reads as a result")
	}
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok := ReadResult(file); ok {
		t.Fatal("an empty result file (the job never ran Execute) reads as a result")
	}
	want := Result{State: Failed, Error: `job "x" failed: boom`}
	b, _ := json.Marshal(want)
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, ok := ReadResult(file); !ok || got != want {
		t.Fatalf("ReadResult = %+v, %v; want %+v", got, ok, want)
	}
}

func TestModulePath(t *testing.T) {
	if ModulePath != "github.com/weirstream/weir" {
		t.Fatalf("ModulePath = %q", ModulePath)
	}
}
