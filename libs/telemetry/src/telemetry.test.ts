// Without an OTLP endpoint the SDK is not started: the API's no-op defaults
// answer, so a call pays for no context, propagation or span. (This file runs
// in a process of its own, as node --test runs each file.)
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { context, createContextKey, propagation, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { startTelemetry } from './telemetry';
import { withModule, activeModule } from './routing';

describe('telemetry without an OTLP endpoint', () => {
  it('starts nothing: no context manager, no propagator, no recording span', () => {
    const t = startTelemetry({ process: 'test', modules: ['a', 'b'], env: {} });
    assert.equal(t.exporting, false);
    const key = createContextKey('k');
    context.with(ROOT_CONTEXT.setValue(key, 1), () => assert.equal(context.active().getValue(key), undefined, 'no context manager carries values'));
    assert.deepEqual(propagation.fields(), [], 'no propagator reads or writes headers');
    const span = trace.getTracer('x').startSpan('s');
    assert.equal(span.isRecording(), false);
    assert.equal(trace.isSpanContextValid(span.spanContext()), false, 'no trace id to send back');
    assert.equal(withModule('a', () => activeModule()), undefined);
  });
});
