package wstransport

import (
	"bytes"
	"encoding/json"

	"github.com/coder/websocket"
)

// protocol is what differs between the two subprotocols: the names of the
// messages that start, stop and carry an operation, and the close code of a
// connection that never initialised.
type protocol struct {
	subscribe, stop, next string
	initTimeoutCode       websocket.StatusCode
}

var (
	// graphql-transport-ws (github.com/enisdenjo/graphql-ws, PROTOCOL.md).
	transportWS = &protocol{subscribe: "subscribe", stop: "complete", next: "next", initTimeoutCode: CloseInitTimeout}
	// graphql-ws of subscriptions-transport-ws, the older protocol.
	graphqlWS = &protocol{subscribe: "start", stop: "stop", next: "data", initTimeoutCode: websocket.StatusProtocolError}
)

// protocolFor is the protocol of a negotiated subprotocol. A client that
// names none gets graphql-ws, as with gqlgen's transport.
func protocolFor(subprotocol string) *protocol {
	if subprotocol == SubprotocolTransportWS {
		return transportWS
	}
	return graphqlWS
}

var (
	frameType    = []byte(`{"type":"`)
	frameID      = []byte(`","id":`)
	frameNoID    = []byte(`"`)
	framePayload = []byte(`,"payload":`)
	frameEnd     = []byte(`}`)
)

// frame is a message as the parts of its frame's payload: type, id (JSON
// encoded; nil for none) and payload (encoded JSON; nil for none). The
// parts are written as they are, so a payload encoded once is never copied
// into a message of its own.
func frame(typ string, qid, payload []byte) [][]byte {
	parts := make([][]byte, 0, 7)
	parts = append(parts, frameType, []byte(typ))
	if qid != nil {
		parts = append(parts, frameID, qid)
	} else {
		parts = append(parts, frameNoID)
	}
	if payload != nil {
		parts = append(parts, framePayload, payload)
	}
	return append(parts, frameEnd)
}

// messageStart is a message up to its payload, which follows it, and then
// frameEnd.
func messageStart(typ string, qid []byte) []byte {
	p := frame(typ, qid, []byte{})
	return bytes.Join(p[:len(p)-1], nil)
}

// quoteID encodes an operation id as a JSON string.
func quoteID(id string) []byte {
	b, _ := json.Marshal(id)
	return b
}
