/**
 * Spans of the encryption component (the `telemetry` option's tracer). A span names the key's
 * scope and scope id, the key version and counts; never key material, plaintext or ciphertext.
 *
 * @module
 */
import {
  inSpan,
  type TelemetryAttributes,
  type TelemetrySpan,
  type TelemetryTracer,
} from "../internal/telemetry.ts";

/** The scope and scope id as attributes (unchecked input: only strings are copied). */
function subject(scope: unknown, scopeId: unknown): TelemetryAttributes {
  return {
    "eventsalsa.encryption.scope": typeof scope === "string" ? scope : typeof scope,
    "eventsalsa.encryption.scope_id": typeof scopeId === "string" ? scopeId : typeof scopeId,
  };
}

/**
 * Runs a key operation on one subject in span `eventsalsa.encryption.<operation>`; its numeric
 * result (a key version, a count) becomes attribute `eventsalsa.encryption.<resultName>`.
 */
export function keySpan(
  tracer: TelemetryTracer,
  operation: string,
  scope: unknown,
  scopeId: unknown,
  resultName: string,
  work: () => Promise<number>,
): Promise<number> {
  return inSpan(
    tracer,
    `eventsalsa.encryption.${operation}`,
    subject(scope, scopeId),
    async (span) => {
      const result = await work();
      span.setAttribute(`eventsalsa.encryption.${resultName}`, result);
      return result;
    },
  );
}

/**
 * Runs an encryption or decryption that fetches the subject's key from the key store (not from
 * the DEK cache) in span `eventsalsa.encryption.fetch_key`. `keyVersion` is null when the active
 * key is fetched (encryption); `finish` adds what the result tells.
 */
export function fetchKeySpan<T>(
  tracer: TelemetryTracer,
  purpose: "encrypt" | "decrypt",
  scope: string,
  scopeId: string,
  keyVersion: number | null,
  work: () => Promise<T>,
  finish?: (span: TelemetrySpan, result: T) => void,
): Promise<T> {
  const attributes = subject(scope, scopeId);
  attributes["eventsalsa.encryption.purpose"] = purpose;
  if (keyVersion !== null) attributes["eventsalsa.encryption.key_version"] = keyVersion;
  return inSpan(tracer, "eventsalsa.encryption.fetch_key", attributes, async (span) => {
    const result = await work();
    finish?.(span, result);
    return result;
  });
}
