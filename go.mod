module github.com/weirstream/weir

go 1.26

require (
	github.com/cespare/xxhash/v2 v2.3.0
	github.com/spf13/cobra v1.8.1
	go.uber.org/goleak v1.3.0
	google.golang.org/protobuf v1.36.5
)

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/pflag v1.0.5 // indirect
)
