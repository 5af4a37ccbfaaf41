/**
 * The errors an EventoDB call can fail with. Every server error code of the protocol maps to exactly one class,
 * so `Effect.catchTag` over `EventoError` stays exhaustive.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * The server could not be reached (connection refused, reset, DNS failure).
 *
 * @since 0.1.0
 * @category errors
 */
export class EventoUnavailable extends Schema.TaggedError<EventoUnavailable>()("EventoUnavailable", {
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

/**
 * The server did not answer within the client's timeout.
 *
 * @since 0.1.0
 * @category errors
 */
export class EventoTimeout extends Schema.TaggedError<EventoTimeout>()("EventoTimeout", {
  message: Schema.String,
  method: Schema.String
}) {}

/**
 * A 5xx answer (or an unexpected status) that is not a duplicate message id.
 *
 * @since 0.1.0
 * @category errors
 */
export class EventoServerError extends Schema.TaggedError<EventoServerError>()("EventoServerError", {
  message: Schema.String,
  status: Schema.Number,
  code: Schema.String
}) {}

/**
 * `expectedVersion` did not match the stream's version. `actualVersion` is known only on backends that report it.
 *
 * @since 0.1.0
 * @category errors
 */
export class StreamVersionConflict extends Schema.TaggedError<StreamVersionConflict>()("StreamVersionConflict", {
  message: Schema.String,
  stream: Schema.String,
  expectedVersion: Schema.Number,
  actualVersion: Schema.OptionFromNullOr(Schema.Number)
}) {}

/**
 * The token was missing (`required`), did not parse (`invalid-token`) or was refused (`unauthorized`).
 *
 * @since 0.1.0
 * @category errors
 */
export class EventoAuthError extends Schema.TaggedError<EventoAuthError>()("EventoAuthError", {
  message: Schema.String,
  reason: Schema.Literal("required", "invalid-token", "unauthorized")
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class NamespaceNotFound extends Schema.TaggedError<NamespaceNotFound>()("NamespaceNotFound", {
  message: Schema.String,
  namespace: Schema.String
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class NamespaceExists extends Schema.TaggedError<NamespaceExists>()("NamespaceExists", {
  message: Schema.String,
  namespace: Schema.String
}) {}

/**
 * The request was refused as malformed, by the server (400) or by the client before sending.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()("InvalidRequest", {
  message: Schema.String
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class MethodNotFound extends Schema.TaggedError<MethodNotFound>()("MethodNotFound", {
  message: Schema.String,
  method: Schema.String
}) {}

/**
 * A message with this id already exists in the namespace. For a resend of the same message this means "delivered".
 *
 * @since 0.1.0
 * @category errors
 */
export class DuplicateMessageId extends Schema.TaggedError<DuplicateMessageId>()("DuplicateMessageId", {
  message: Schema.String,
  id: Schema.String
}) {}

/**
 * The server answered something that does not decode as the protocol says.
 *
 * @since 0.1.0
 * @category errors
 */
export class EventoProtocolError extends Schema.TaggedError<EventoProtocolError>()("EventoProtocolError", {
  message: Schema.String
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export type EventoError =
  | EventoUnavailable
  | EventoTimeout
  | EventoServerError
  | StreamVersionConflict
  | EventoAuthError
  | NamespaceNotFound
  | NamespaceExists
  | InvalidRequest
  | MethodNotFound
  | DuplicateMessageId
  | EventoProtocolError

/**
 * The schema of every error, for storing an error (the outbox's `last_error`) and reading it back.
 *
 * @since 0.1.0
 * @category errors
 */
export const EventoError: Schema.Union<[
  typeof EventoUnavailable,
  typeof EventoTimeout,
  typeof EventoServerError,
  typeof StreamVersionConflict,
  typeof EventoAuthError,
  typeof NamespaceNotFound,
  typeof NamespaceExists,
  typeof InvalidRequest,
  typeof MethodNotFound,
  typeof DuplicateMessageId,
  typeof EventoProtocolError
]> = Schema.Union(
  EventoUnavailable,
  EventoTimeout,
  EventoServerError,
  StreamVersionConflict,
  EventoAuthError,
  NamespaceNotFound,
  NamespaceExists,
  InvalidRequest,
  MethodNotFound,
  DuplicateMessageId,
  EventoProtocolError
)

/**
 * True for failures that say nothing about the request itself: retrying later may succeed.
 *
 * @since 0.1.0
 * @category errors
 */
export const isTransient = (error: EventoError): boolean =>
  error._tag === "EventoUnavailable" || error._tag === "EventoTimeout" || error._tag === "EventoServerError"
