// Package version is Weir's version, which the master, TaskManagers and
// workers compare when they connect: processes of different versions do not
// talk to each other.
package version

// Version is set at build time with
// -ldflags "-X github.com/weirstream/weir/internal/version.Version=...".
var Version = "0.1.0-dev"
