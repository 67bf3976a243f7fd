package slotmanager

import (
	"fmt"
	"time"

	"github.com/weirstream/weir/internal/resource"
)

func ExampleTimeoutError() {
	m := New(Options{RequestTimeout: time.Minute})
	m.RegisterTaskManager("tm-1", []resource.Profile{{CPU: 1000}, {CPU: 1000}}, t0)
	m.Declare("other", []Requirement{{Group: "default", Count: 1}}, t0)
	m.Declare("q5", []Requirement{{Group: "default", Count: 8, Profile: resource.Profile{CPU: 2000}}}, t0)
	for _, a := range m.Tick(t0.Add(time.Minute)) {
		fmt.Println(a.(RequestTimeout).Err)
	}
	// Output:
	// job "q5": slot sharing group "default" asks for 8 slots of at least cpu=2 but holds 0 after waiting 1m0s (slot.request.timeout); the cluster has 1 TaskManager with 2 slots: 1 free (0 large enough), 1 held by other jobs; start more TaskManagers (with large enough slots), lower the job's parallelism, or raise slot.request.timeout
}
