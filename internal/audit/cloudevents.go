package audit

import (
	"context"
	"fmt"
	"net/http"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// CloudEventType is the type attribute of the CloudEvents the Sender posts.
const CloudEventType = "io.kubernaut.execution.finished"

// DefaultSource is the CloudEvents source attribute when the configuration sets none, and the
// Sender's User-Agent.
const DefaultSource = "kubernaut-executor"

// CloudEvent returns ev as a CloudEvents 1.0 event: id is the event's id (so a resend is
// recognised, as with the Idempotency-Key header), type CloudEventType, source as given,
// subject namespace/name of the execution, time the event's timestamp, and data the Event's
// JSON (datacontenttype application/json).
func CloudEvent(ev Event, source string) (cloudevents.Event, error) {
	data, err := ev.Encode()
	if err != nil {
		return cloudevents.Event{}, err
	}
	ce := cloudevents.NewEvent(cloudevents.VersionV1)
	ce.SetID(ev.EventID)
	ce.SetType(CloudEventType)
	ce.SetSource(source)
	ce.SetSubject(ev.ExecutionNamespace + "/" + ev.ExecutionName)
	ce.SetTime(ev.Timestamp)
	// The Event's own encoding, set as is: SetData would base64 a []byte and escape < and >.
	ce.SetDataContentType(cloudevents.ApplicationJSON)
	ce.DataEncoded, ce.DataBase64 = data, false
	if err := ce.Validate(); err != nil {
		return cloudevents.Event{}, fmt.Errorf("building cloudevent %s: %w", ev.EventID, err)
	}
	return ce, nil
}

// cloudEventRequest builds the POST of ce to endpoint in structured mode, with the SDK's HTTP
// binding. The Sender sends it itself, so both formats share one transport, one timeout and
// one way of reading the answer.
func cloudEventRequest(ctx context.Context, endpoint string, ce cloudevents.Event) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, nil)
	if err != nil {
		return nil, fmt.Errorf("building audit request: %w", err)
	}
	if err := cehttp.WriteRequest(cloudevents.WithEncodingStructured(ctx), binding.ToMessage(&ce), req); err != nil {
		return nil, fmt.Errorf("encoding cloudevent %s: %w", ce.ID(), err)
	}
	return req, nil
}
