package main

import (
	"runtime"
	"strings"
	"testing"

	"github.com/weirstream/weir/internal/resource"
)

func TestTaskManagerOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		f       taskManagerFlags
		changed []string
		wantErr string
		check   func(t *testing.T, f taskManagerFlags)
	}{
		{name: "defaults", check: func(t *testing.T, f taskManagerFlags) {
			o, _ := f.options(func(string) bool { return false })
			want := resource.Profile{CPU: int64(runtime.NumCPU()) * 1000, TaskMemory: 1 << 30}
			if o.MasterAddress != "127.0.0.1:6123" || o.Slots != 1 || !o.Total.Equal(want) || o.HeartbeatTimeout.String() != "2s" {
				t.Errorf("options %+v", o)
			}
		}},
		{name: "flags", f: taskManagerFlags{jobmanager: "master:7000", slots: 4, cpu: "4", memory: "8g"},
			changed: []string{"slots", "cpu", "memory"}, check: func(t *testing.T, f taskManagerFlags) {
				o, _ := f.options(func(n string) bool { return n != "jobmanager" })
				if o.MasterAddress != "master:7000" || o.Slots != 4 || o.Total.CPU != 4000 || o.Total.TaskMemory != 8<<30 {
					t.Errorf("options %+v", o)
				}
			}},
		{name: "config", f: taskManagerFlags{defines: []string{"taskmanager.numberOfTaskSlots=3", "taskmanager.cpu.cores=1.5",
			"taskmanager.memory.process.size=3g", "jobmanager.rpc.address=m1", "jobmanager.rpc.port=7001",
			"taskmanager.resource-id=tm-a", "taskmanager.host=10.0.0.5", "cluster.working-dir=/var/weir"}},
			check: func(t *testing.T, f taskManagerFlags) {
				o, _ := f.options(func(string) bool { return false })
				if o.MasterAddress != "m1:7001" || o.Slots != 3 || o.Total.CPU != 1500 || o.Total.TaskMemory != 3<<30 ||
					o.ResourceID != "tm-a" || o.DataHost != "10.0.0.5" || o.WorkDir != "/var/weir" {
					t.Errorf("options %+v", o)
				}
			}},
		{name: "host without port", f: taskManagerFlags{jobmanager: "master"}, check: func(t *testing.T, f taskManagerFlags) {
			if o, _ := f.options(func(string) bool { return false }); o.MasterAddress != "master:6123" {
				t.Errorf("address %q", o.MasterAddress)
			}
		}},
		{name: "bad memory", f: taskManagerFlags{memory: "2x"}, changed: []string{"memory"},
			wantErr: "--memory 2x: not a memory size; write e.g. 2g or 512m"},
		{name: "bad configured memory", f: taskManagerFlags{defines: []string{"taskmanager.memory.process.size=lots"}},
			wantErr: "-D taskmanager.memory.process.size=lots: not a memory size"},
		{name: "bad cpu", f: taskManagerFlags{cpu: "2x"}, changed: []string{"cpu"}, wantErr: `--cpu 2x: invalid CPU amount "2x"`},
		{name: "zero slots", f: taskManagerFlags{slots: 0}, changed: []string{"slots"}, wantErr: "--slots 0: a TaskManager needs at least 1 slot"},
		{name: "url", f: taskManagerFlags{jobmanager: "http://m:8081"}, wantErr: "not a URL"},
		{name: "bad port", f: taskManagerFlags{jobmanager: "m:http"}, wantErr: `--jobmanager m:http: "http" is not a port`},
		{name: "bad -D", f: taskManagerFlags{defines: []string{"taskmanager.numberOfTaskSlot=2"}}, wantErr: "did you mean"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changed := func(n string) bool {
				for _, c := range tc.changed {
					if c == n {
						return true
					}
				}
				return false
			}
			_, err := tc.f.options(changed)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, tc.f)
		})
	}
}
