package network

import (
	"encoding/hex"
	"fmt"
)

// ChannelID names one logical, ordered, one-way stream of buffers from one
// producer subtask to one consumer subtask of one attempt of a job.
type ChannelID struct {
	Job      [16]byte // job id
	Attempt  uint32   // job restart attempt; buffers of an old attempt never reach a new one
	Edge     uint32   // job-graph edge id
	Producer uint32   // producer subtask index
	Consumer uint32   // consumer subtask index
}

// String formats the id for error messages and logs.
func (id ChannelID) String() string {
	return fmt.Sprintf("job %s attempt %d edge %d subtask %d→%d",
		hex.EncodeToString(id.Job[:]), id.Attempt, id.Edge, id.Producer, id.Consumer)
}

// sansAttempt is the id with the attempt cleared: all attempts of one logical
// channel share it, which is how a stale attempt is recognised.
func (id ChannelID) sansAttempt() ChannelID {
	id.Attempt = 0
	return id
}
