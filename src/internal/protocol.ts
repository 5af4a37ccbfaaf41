/**
 * The wire format of EventoDB (PROTOCOL.md): result schemas, and the mapping of error answers to `EventoError`.
 */
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type { JsonObject } from "../EventoClient.js"
import {
  DuplicateMessageId,
  EventoAuthError,
  type EventoError,
  EventoProtocolError,
  EventoServerError,
  InvalidRequest,
  MethodNotFound,
  NamespaceExists,
  NamespaceNotFound,
  StreamVersionConflict
} from "../EventoError.js"

const isJsonObject = (u: unknown): u is JsonObject => typeof u === "object" && u !== null && !Array.isArray(u)

/** A JSON object (not an array, not null), kept as the same reference. */
export const JsonObjectSchema: Schema.Schema<JsonObject> = Schema.declare(isJsonObject, {
  identifier: "JsonObject",
  description: "a JSON object"
})

const rfc3339 = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$/

/**
 * Parses RFC 3339 with a fraction of any length or none: Postgres sends microseconds with trailing zeros trimmed,
 * SQLite whole seconds, Pebble nanoseconds (PROTOCOL.md §6). A `Date` keeps milliseconds.
 */
export const parseTime = (text: string): Option.Option<Date> => {
  const match = rfc3339.exec(text)
  if (match === null) return Option.none()
  const fraction = (match[2] ?? "").padEnd(3, "0").slice(0, 3)
  const date = new Date(`${match[1]}.${fraction}${match[3]}`)
  return Number.isNaN(date.getTime()) ? Option.none() : Option.some(date)
}

/** An RFC 3339 timestamp with a variable fraction, decoded to a `Date`. */
export const Time: Schema.Schema<Date, string> = Schema.transformOrFail(Schema.String, Schema.DateFromSelf, {
  strict: true,
  decode: (text, _, ast) =>
    Option.match(parseTime(text), {
      onNone: () => ParseResult.fail(new ParseResult.Type(ast, text, "Expected an RFC 3339 timestamp")),
      onSome: ParseResult.succeed
    }),
  encode: (date) => ParseResult.succeed(date.toISOString())
})

// `data` is never null for messages written by RPC, but an import can store null (PROTOCOL.md §6). Decoding it as
// `{}` keeps one odd message from failing every read of its category.
const Data = Schema.transform(Schema.NullOr(JsonObjectSchema), Schema.typeSchema(JsonObjectSchema), {
  strict: true,
  decode: (data) => data ?? {},
  encode: (data) => data
})

const Metadata = Schema.OptionFromNullOr(JsonObjectSchema)

/** `stream.get` / `stream.last` row: `[id, type, position, globalPosition, data, metadata, time]`. */
export const StreamRow = Schema.Tuple(
  Schema.String,
  Schema.String,
  Schema.Number,
  Schema.Number,
  Data,
  Metadata,
  Time
)

/** `category.get` row: `[id, streamName, type, position, globalPosition, data, metadata, time]`. */
export const CategoryRow = Schema.Tuple(
  Schema.String,
  Schema.String,
  Schema.String,
  Schema.Number,
  Schema.Number,
  Data,
  Metadata,
  Time
)

export const StreamRows = Schema.Array(StreamRow)
export const CategoryRows = Schema.Array(CategoryRow)
export const LastRow = Schema.NullOr(StreamRow)

export const WriteResult = Schema.Struct({ position: Schema.Number, globalPosition: Schema.Number })

export const Version = Schema.NullOr(Schema.Number)

export const NamespaceCreated = Schema.Struct({
  namespace: Schema.String,
  token: Schema.Redacted(Schema.String),
  createdAt: Time
})

export const NamespaceDeleted = Schema.Struct({
  namespace: Schema.String,
  deletedAt: Time,
  messagesDeleted: Schema.Number
})

const Description = Schema.optionalWith(Schema.String, { default: () => "", nullable: true })

export const NamespaceSummary = Schema.Struct({
  namespace: Schema.String,
  description: Description,
  createdAt: Time,
  messageCount: Schema.Number
})

export const NamespaceSummaries = Schema.Array(NamespaceSummary)

export const NamespaceInfo = Schema.Struct({
  namespace: Schema.String,
  description: Description,
  createdAt: Time,
  messageCount: Schema.Number,
  streamCount: Schema.optionalWith(Schema.Number, { default: () => 0 }),
  lastActivity: Schema.optionalWith(Schema.OptionFromNullOr(Time), { default: () => Option.none() })
})

export const StreamSummaries = Schema.Array(Schema.Struct({
  stream: Schema.String,
  version: Schema.Number,
  lastActivity: Time
}))

export const CategorySummaries = Schema.Array(Schema.Struct({
  category: Schema.String,
  streamCount: Schema.Number,
  messageCount: Schema.Number
}))

export const SystemVersion = Schema.String

export const Health = Schema.Struct({ status: Schema.String })

export const Poke = Schema.Struct({ stream: Schema.String, position: Schema.Number, globalPosition: Schema.Number })

const ErrorBody = Schema.Struct({
  error: Schema.Struct({
    code: Schema.String,
    message: Schema.String,
    details: Schema.optional(Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.Unknown })))
  })
})

const decodeErrorBody = Schema.decodeUnknownEither(Schema.parseJson(ErrorBody))

/** What the client knows about the call an answer belongs to, for errors that name it. */
export interface CallContext {
  readonly method: string
  readonly stream?: string | undefined
  readonly expectedVersion?: number | undefined
  readonly id?: string | undefined
  readonly namespace?: string | undefined
}

/** A short, single-line excerpt of a body, for messages. */
export const excerpt = (body: string, max = 160): string => {
  const flat = body.replace(/\s+/g, " ").trim()
  if (flat.length === 0) return "an empty body"
  return JSON.stringify(flat.length > max ? `${flat.slice(0, max)}…` : flat)
}

// Postgres names its unique index; SQLite names the column (LESSONS 1, PROTOCOL.md §8).
const duplicateId = /unique constraint "messages_id"|UNIQUE constraint failed: messages\.id/

/** Maps one decoded error answer (§3) to its `EventoError`. */
export const fromCode = (
  context: CallContext,
  status: number,
  code: string,
  message: string,
  details: { readonly [key: string]: unknown } | null | undefined
): EventoError => {
  switch (code) {
    case "AUTH_REQUIRED":
      return new EventoAuthError({ reason: "required", message })
    case "AUTH_INVALID_TOKEN":
    case "AUTH_INVALID":
      return new EventoAuthError({ reason: "invalid-token", message })
    case "AUTH_UNAUTHORIZED":
      return new EventoAuthError({ reason: "unauthorized", message })
    case "NAMESPACE_NOT_FOUND":
      return new NamespaceNotFound({ message, namespace: context.namespace ?? "" })
    case "NAMESPACE_EXISTS":
      return new NamespaceExists({ message, namespace: context.namespace ?? "" })
    case "STREAM_VERSION_CONFLICT": {
      // Only the SQLite backend reports the actual version (§3).
      const actual = details?.["actual"]
      return new StreamVersionConflict({
        message,
        stream: context.stream ?? "",
        expectedVersion: context.expectedVersion ?? -1,
        actualVersion: typeof actual === "number" ? Option.some(actual) : Option.none()
      })
    }
    case "INVALID_REQUEST":
      return new InvalidRequest({ message })
    case "METHOD_NOT_FOUND":
      return new MethodNotFound({ message, method: context.method })
    case "BACKEND_ERROR":
      if (context.id !== undefined && duplicateId.test(message)) {
        return new DuplicateMessageId({ message, id: context.id })
      }
      return new EventoServerError({ message, status, code })
    default:
      return new EventoServerError({ message, status, code })
  }
}

/**
 * Maps a non-200 answer to its `EventoError`. A body that is not an EventoDB error is a server error when the status
 * is 5xx (a proxy's error page while the server restarts: worth retrying), else a protocol error.
 */
export const fromResponse = (context: CallContext, status: number, body: string): EventoError =>
  Either.match(decodeErrorBody(body), {
    onRight: ({ error }) => fromCode(context, status, error.code, error.message, error.details),
    onLeft: () =>
      status >= 500
        ? new EventoServerError({
          status,
          code: "UNKNOWN",
          message: `${context.method}: HTTP ${status} with a body that is not an EventoDB error: ${excerpt(body)}`
        })
        : new EventoProtocolError({
          message:
            `${context.method}: expected an EventoDB error body {"error":{"code","message"}} with HTTP ${status}, got ${
              excerpt(body)
            }`
        })
  })

/** Decodes a 200 answer with `schema`; anything else is an `EventoProtocolError` that says what was expected. */
export const decodeResult = <A, I>(
  context: CallContext,
  schema: Schema.Schema<A, I>,
  expected: string,
  body: string
): Either.Either<A, EventoProtocolError> => {
  let json: unknown
  try {
    json = JSON.parse(body)
  } catch {
    return Either.left(
      new EventoProtocolError({ message: `${context.method}: expected JSON (${expected}), got ${excerpt(body)}` })
    )
  }
  return Schema.decodeUnknownEither(schema)(json).pipe(
    Either.mapLeft((error) => {
      const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
      const where = issue === undefined || issue.path.length === 0 ? "" : ` (at ${issue.path.join(".")})`
      return new EventoProtocolError({
        message: `${context.method}: expected ${expected}, got ${excerpt(body)}${where}`
      })
    })
  )
}
