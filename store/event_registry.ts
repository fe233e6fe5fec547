/**
 * Typed events: a registry from `(eventType, eventVersion)` to encode/decode functions, with
 * upcasters that lift older stored versions to the current one. The TypeScript form of the Go
 * original's `eventmap` code generator, without generated code.
 *
 * @module
 */
import { ValidationError } from "./errors.ts";
import type { Event, JsonObject, PersistedEvent } from "./types.ts";

/**
 * Turns event data into payload bytes and back. JSON (UTF-8) when not given.
 *
 * @example
 * ```ts
 * import type { EventCodec } from "@eventsalsa/eventsalsa/store";
 * const text: EventCodec = {
 *   encode: (value) => new TextEncoder().encode(String(value)),
 *   decode: (bytes) => new TextDecoder().decode(bytes),
 * };
 * ```
 */
export interface EventCodec {
  /** Data to payload bytes. */
  encode(data: unknown): Uint8Array;
  /** Payload bytes to data (in the version they were written in). */
  decode(payload: Uint8Array): unknown;
}

/**
 * One event type's definition: its current version, optional codec, and upcasters keyed by the
 * version they lift from (`{ 1: v1 => v2, 2: v2 => v3 }`). Build it with {@link eventType}.
 *
 * @example
 * ```ts
 * import { eventType, type EventTypeDefinition } from "@eventsalsa/eventsalsa/store";
 * const placed: EventTypeDefinition<{ total: number }> = eventType<{ total: number }>();
 * ```
 */
export interface EventTypeDefinition<Data> {
  /** The version written today. */
  readonly version: number;
  /** Codec for this type; the registry's when omitted. */
  readonly codec?: EventCodec;
  /** `upcasters[v]` lifts data of version `v` to version `v + 1`. */
  readonly upcasters: Readonly<Record<number, (data: never) => unknown>>;
  /** Phantom field carrying the data type; never set at runtime. */
  readonly __data?: Data;
}

/**
 * Defines an event type whose current data has type `Data`.
 *
 * @example
 * ```ts
 * import { eventType } from "@eventsalsa/eventsalsa/store";
 * // Version 2 added a currency; stored version-1 events are lifted on read.
 * const OrderPlaced = eventType<{ total: number; currency: string }>({
 *   version: 2,
 *   upcasters: { 1: (v1: { total: number }) => ({ ...v1, currency: "EUR" }) },
 * });
 * ```
 */
export function eventType<Data>(
  options: {
    version?: number;
    codec?: EventCodec;
    upcasters?: Record<number, (data: never) => unknown>;
  } = {},
): EventTypeDefinition<Data> {
  const version = options.version ?? 1;
  if (!Number.isInteger(version) || version < 1) {
    throw new ValidationError(`event type version must be a positive integer, got ${version}`);
  }
  const upcasters = options.upcasters ?? {};
  for (let v = 1; v < version; v++) {
    if (typeof upcasters[v] !== "function") {
      throw new ValidationError(
        `version ${version} needs an upcaster from version ${v} to ${v + 1}`,
      );
    }
  }
  return { version, codec: options.codec, upcasters };
}

/**
 * The data type of a definition.
 *
 * @example
 * ```ts
 * import { type DataOf, eventType } from "@eventsalsa/eventsalsa/store";
 * const OrderShipped = eventType<{ carrier: string }>();
 * const data: DataOf<typeof OrderShipped> = { carrier: "DHL" };
 * ```
 */
export type DataOf<Definition> = Definition extends EventTypeDefinition<infer Data> ? Data : never;

/**
 * A decoded event: a discriminated union on `type`, with the stored event alongside.
 *
 * @example
 * ```ts
 * import type { DecodedEvent, EventTypeDefinition } from "@eventsalsa/eventsalsa/store";
 * type Defs = { OrderPlaced: EventTypeDefinition<{ total: number }> };
 * function total(e: DecodedEvent<Defs>): number {
 *   return e.type === "OrderPlaced" ? e.data.total : 0;
 * }
 * ```
 */
export type DecodedEvent<Definitions> = {
  [Type in keyof Definitions & string]: {
    readonly type: Type;
    readonly data: DataOf<Definitions[Type]>;
    readonly event: PersistedEvent;
  };
}[keyof Definitions & string];

/**
 * A domain event to store: its type and current-version data.
 *
 * @example
 * ```ts
 * import type { DomainEvent, EventTypeDefinition } from "@eventsalsa/eventsalsa/store";
 * type Defs = { OrderPlaced: EventTypeDefinition<{ total: number }> };
 * const placed: DomainEvent<Defs> = { type: "OrderPlaced", data: { total: 42 } };
 * ```
 */
export type DomainEvent<Definitions> = {
  [Type in keyof Definitions & string]: {
    readonly type: Type;
    readonly data: DataOf<Definitions[Type]>;
  };
}[keyof Definitions & string];

/**
 * Thrown when a stored event's type is not in the registry, or its version is newer than the
 * registry knows (written by newer code) or below 1.
 *
 * @example
 * ```ts
 * import { UnknownEventError } from "@eventsalsa/eventsalsa/store";
 * const error = new UnknownEventError("OrderVoided", 1, "not registered");
 * console.log(error.eventType, error.eventVersion);
 * ```
 */
export class UnknownEventError extends Error {
  /** Stable error name. */
  override readonly name: string = "UnknownEventError";
  /** The stored event type. */
  readonly eventType: string;
  /** The stored event version. */
  readonly eventVersion: number;
  /** Creates the error. */
  constructor(eventType: string, eventVersion: number, reason: string) {
    super(`cannot decode ${eventType} v${eventVersion}: ${reason}`);
    this.eventType = eventType;
    this.eventVersion = eventVersion;
  }
}

/**
 * The registry returned by {@link defineEvents}.
 *
 * @example
 * ```ts
 * import { defineEvents, eventType, type EventRegistry } from "@eventsalsa/eventsalsa/store";
 * const defs = { Renamed: eventType<{ name: string }>() };
 * const registry: EventRegistry<typeof defs> = defineEvents(defs);
 * ```
 */
export interface EventRegistry<Definitions> {
  /** The registered event type names. */
  readonly types: readonly string[];
  /** Encodes domain events for `append`, all for one aggregate, with shared optional fields. */
  toEvents(
    aggregate: { aggregateType: string; aggregateId: string },
    events: readonly DomainEvent<Definitions>[],
    shared?: {
      metadata?: JsonObject | null;
      traceId?: string | null;
      correlationId?: string | null;
      causationId?: string | null;
      createdAt?: Date;
    },
  ): Event[];
  /** Decodes a stored event, upcasting older versions; throws {@link UnknownEventError}. */
  fromEvent(event: PersistedEvent): DecodedEvent<Definitions>;
}

const json: EventCodec = {
  encode: (data) => new TextEncoder().encode(JSON.stringify(data)),
  decode: (payload) => JSON.parse(new TextDecoder().decode(payload)),
};

/**
 * Builds a typed registry of event types.
 *
 * @example
 * ```ts
 * import { defineEvents, eventType } from "@eventsalsa/eventsalsa/store";
 *
 * const OrderEvents = defineEvents({
 *   OrderPlaced: eventType<{ total: number; currency: string }>({
 *     version: 2,
 *     upcasters: { 1: (v1: { total: number }) => ({ ...v1, currency: "EUR" }) },
 *   }),
 *   OrderShipped: eventType<{ carrier: string }>(),
 * });
 *
 * const events = OrderEvents.toEvents({ aggregateType: "Order", aggregateId: "o-1" }, [
 *   { type: "OrderPlaced", data: { total: 42, currency: "EUR" } },
 * ]);
 * // later: const decoded = OrderEvents.fromEvent(persisted);
 * // if (decoded.type === "OrderPlaced") decoded.data.currency;
 * ```
 */
export function defineEvents<Definitions extends Record<string, EventTypeDefinition<unknown>>>(
  definitions: Definitions,
  options: { codec?: EventCodec } = {},
): EventRegistry<Definitions> {
  const registryCodec = options.codec ?? json;
  const byType = new Map(Object.entries(definitions));
  return {
    types: [...byType.keys()],
    toEvents(aggregate, events, shared = {}): Event[] {
      return events.map((domainEvent, index) => {
        const definition = byType.get(domainEvent.type);
        if (!definition) {
          throw new ValidationError(
            `event ${index}: type ${JSON.stringify(domainEvent.type)} is not registered`,
          );
        }
        return {
          aggregateType: aggregate.aggregateType,
          aggregateId: aggregate.aggregateId,
          eventType: domainEvent.type,
          eventVersion: definition.version,
          payload: (definition.codec ?? registryCodec).encode(domainEvent.data),
          ...shared,
        };
      });
    },
    fromEvent(event: PersistedEvent): DecodedEvent<Definitions> {
      const definition = byType.get(event.eventType);
      if (!definition) {
        throw new UnknownEventError(event.eventType, event.eventVersion, "type not registered");
      }
      if (event.eventVersion > definition.version || event.eventVersion < 1) {
        throw new UnknownEventError(
          event.eventType,
          event.eventVersion,
          `the registry knows versions 1..${definition.version}`,
        );
      }
      let data = (definition.codec ?? registryCodec).decode(event.payload);
      for (let v = event.eventVersion; v < definition.version; v++) {
        data = (definition.upcasters[v] as (value: unknown) => unknown)(data);
      }
      return { type: event.eventType, data, event } as DecodedEvent<Definitions>;
    },
  };
}
