/**
 * The EventoDB JSON-RPC client behind `EventoClient`.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Schema from "effect/Schema"
import type {
  CategoryGetOptions,
  EventoClient,
  JsonObject,
  Message,
  NamespaceCreateOptions,
  NamespaceStreamsOptions,
  NewMessage,
  Options,
  StreamGetOptions,
  StreamLastOptions,
  WriteOptions
} from "../EventoClient.js"
import { EventoAuthError, type EventoError, EventoTimeout, EventoUnavailable, InvalidRequest } from "../EventoError.js"
import { objectProblem } from "./json.js"
import * as Protocol from "./protocol.js"
import * as Sse from "./sse.js"
import * as Token from "./token.js"

/** The default timeout of one RPC call. */
export const defaultTimeout: Duration.Duration = Duration.seconds(10)

/** What a client needs to talk to one namespace of one server. */
export interface Connection {
  readonly http: HttpClient.HttpClient
  readonly baseUrl: string
  readonly token: Redacted.Redacted<string>
  readonly namespace: string
  readonly timeout: Duration.Duration
}

/** The plaintext namespace of a token, or `EventoAuthError { reason: "invalid-token" }`. */
export const namespaceOf = (token: Redacted.Redacted<string>): Effect.Effect<string, EventoAuthError> =>
  Either.match(Token.decodeNamespace(Redacted.value(token)), {
    onLeft: (why) => Effect.fail(new EventoAuthError({ reason: "invalid-token", message: `Invalid token: ${why}` })),
    onRight: Effect.succeed
  })

const toRedacted = (token: string | Redacted.Redacted<string>): Redacted.Redacted<string> =>
  Redacted.isRedacted(token) ? token : Redacted.make(token)

// --- client-side validation (SDK-TESTS ERROR-002/003): refused before any request is sent ---

const isObject = (u: unknown): u is JsonObject => typeof u === "object" && u !== null && !Array.isArray(u)

const invalid = (message: string) => Effect.fail(new InvalidRequest({ message }))

const requireName = (value: unknown, what: string): Effect.Effect<string, InvalidRequest> =>
  typeof value === "string" && value.length > 0 ? Effect.succeed(value) : invalid(`${what} must be a non-empty string`)

const requireString = (value: unknown, what: string): Effect.Effect<string, InvalidRequest> =>
  typeof value === "string" ? Effect.succeed(value) : invalid(`${what} must be a string`)

const isAbsent = (value: unknown): value is null | undefined => value === undefined || value === null

/** Checks optional option fields and drops absent ones: the server rejects explicit nulls (PROTOCOL.md §2). */
const encodeOptions = (
  what: string,
  options: unknown,
  fields: { readonly [key: string]: "integer" | "string" | "object" }
): Effect.Effect<Option.Option<Record<string, unknown>>, InvalidRequest> => {
  if (isAbsent(options)) return Effect.succeed(Option.none())
  if (!isObject(options)) return invalid(`${what} must be an object`)
  const encoded: Record<string, unknown> = {}
  for (const [key, kind] of Object.entries(fields)) {
    const value = options[key]
    if (isAbsent(value)) continue
    if (kind === "object") {
      // Deeply: JSON.stringify would quietly turn NaN into null and drop undefined, functions and Map contents.
      const problem = objectProblem(value, `${what}.${key}`)
      if (problem !== undefined) return invalid(problem)
      encoded[key] = value
      continue
    }
    const ok = kind === "integer" ? typeof value === "number" && Number.isInteger(value) : typeof value === "string"
    if (!ok) return invalid(`${what}.${key} must be ${kind === "integer" ? "an integer" : `a ${kind}`}`)
    encoded[key] = value
  }
  return Effect.succeed(Object.keys(encoded).length === 0 ? Option.none() : Option.some(encoded))
}

const encodeMessage = (message: NewMessage): Effect.Effect<Record<string, unknown>, InvalidRequest> => {
  if (!isObject(message)) return invalid("message must be an object with type and data")
  if (typeof message.type !== "string" || message.type.length === 0) {
    return invalid("message.type must be a non-empty string")
  }
  // Deeply, not just the top level: JSON.stringify would store NaN and Infinity as null and drop undefined values,
  // functions and the contents of a Map, so the stored message would differ from the one written.
  const dataProblem = objectProblem(message.data, "message.data")
  if (dataProblem !== undefined) return invalid(dataProblem)
  // A null or absent metadata is left out: the server stores SQL NULL then, and refuses an explicit null.
  if (isAbsent(message.metadata)) return Effect.succeed({ type: message.type, data: message.data })
  const metadataProblem = objectProblem(message.metadata, "message.metadata")
  if (metadataProblem !== undefined) return invalid(`${metadataProblem} (or left out)`)
  return Effect.succeed({ type: message.type, data: message.data, metadata: message.metadata })
}

const consumerGroupOk = (group: unknown): boolean =>
  isObject(group) && Number.isInteger(group["member"]) && Number.isInteger(group["size"])

// --- message shapes ---

type StreamRow = typeof Protocol.StreamRow.Type
type CategoryRow = typeof Protocol.CategoryRow.Type

const fromStreamRow = (streamName: string) => (row: StreamRow): Message => ({
  id: row[0],
  streamName,
  type: row[1],
  position: row[2],
  globalPosition: row[3],
  data: row[4],
  metadata: row[5],
  time: row[6]
})

const fromCategoryRow = (row: CategoryRow): Message => ({
  id: row[0],
  streamName: row[1],
  type: row[2],
  position: row[3],
  globalPosition: row[4],
  data: row[5],
  metadata: row[6],
  time: row[7]
})

const transportError = (method: string, error: HttpClientError.HttpClientError): EventoError =>
  new EventoUnavailable({
    message: `${method}: EventoDB is unreachable (${error.reason}: ${error.message})`,
    cause: error
  })

/** Builds the service for one connection. */
export const fromConnection = (connection: Connection): EventoClient.Service => {
  const { baseUrl, http, timeout, token } = connection
  const rpcUrl = `${baseUrl}/rpc`

  const call = <A, I>(
    context: Protocol.CallContext,
    args: ReadonlyArray<unknown>,
    schema: Schema.Schema<A, I>,
    expected: string
  ): Effect.Effect<A, EventoError> =>
    HttpClientRequest.post(rpcUrl).pipe(
      HttpClientRequest.bearerToken(token),
      HttpClientRequest.acceptJson,
      HttpClientRequest.bodyJson([context.method, ...args]),
      Effect.mapError((error) =>
        new InvalidRequest({
          message: `${context.method}: arguments are not JSON-serialisable (${String(error.reason.error)})`
        })
      ),
      Effect.flatMap((request) =>
        http.execute(request).pipe(
          Effect.flatMap((response) => Effect.map(response.text, (body) => ({ status: response.status, body }))),
          Effect.mapError((error) => transportError(context.method, error)),
          Effect.timeoutFail({
            duration: timeout,
            onTimeout: () =>
              new EventoTimeout({
                method: context.method,
                message: `${context.method}: no answer within ${Duration.format(timeout)}`
              })
          })
        )
      ),
      Effect.flatMap(({ body, status }) =>
        status === 200
          ? Protocol.decodeResult(context, schema, expected, body)
          : Either.left(Protocol.fromResponse(context, status, body))
      )
    )

  const withOptions = (args: ReadonlyArray<unknown>, options: Option.Option<Record<string, unknown>>) =>
    Option.match(options, { onNone: () => args, onSome: (encoded) => [...args, encoded] })

  const streamWrite = Effect.fn("EventoClient.streamWrite")(
    function*(stream: string, message: NewMessage, options?: WriteOptions) {
      yield* requireName(stream, "stream name")
      const encodedMessage = yield* encodeMessage(message)
      const encodedOptions = yield* encodeOptions("options", options, { id: "string", expectedVersion: "integer" })
      yield* Effect.annotateCurrentSpan({ "eventodb.stream": stream, "eventodb.type": message.type })
      // An empty id asks the server to generate one, so it can never be a duplicate.
      const id = typeof options?.id === "string" && options.id.length > 0 ? options.id : undefined
      const expectedVersion = typeof options?.expectedVersion === "number" ? options.expectedVersion : undefined
      return yield* call(
        { method: "stream.write", stream, id, expectedVersion },
        withOptions([stream, encodedMessage], encodedOptions),
        Protocol.WriteResult,
        "a write result {position, globalPosition}"
      )
    }
  )

  const streamGet = Effect.fn("EventoClient.streamGet")(function*(stream: string, options?: StreamGetOptions) {
    yield* requireName(stream, "stream name")
    const encoded = yield* encodeOptions("options", options, {
      position: "integer",
      globalPosition: "integer",
      batchSize: "integer"
    })
    yield* Effect.annotateCurrentSpan("eventodb.stream", stream)
    const rows = yield* call(
      { method: "stream.get", stream },
      withOptions([stream], encoded),
      Protocol.StreamRows,
      "an array of [id, type, position, globalPosition, data, metadata, time]"
    )
    return rows.map(fromStreamRow(stream))
  })

  const streamLast = Effect.fn("EventoClient.streamLast")(function*(stream: string, options?: StreamLastOptions) {
    yield* requireName(stream, "stream name")
    const encoded = yield* encodeOptions("options", options, { type: "string" })
    yield* Effect.annotateCurrentSpan("eventodb.stream", stream)
    const row = yield* call(
      { method: "stream.last", stream },
      withOptions([stream], encoded),
      Protocol.LastRow,
      "null or [id, type, position, globalPosition, data, metadata, time]"
    )
    return Option.map(Option.fromNullable(row), fromStreamRow(stream))
  })

  const streamVersion = Effect.fn("EventoClient.streamVersion")(function*(stream: string) {
    yield* requireName(stream, "stream name")
    yield* Effect.annotateCurrentSpan("eventodb.stream", stream)
    const version = yield* call(
      { method: "stream.version", stream },
      [stream],
      Protocol.Version,
      "a number or null"
    )
    return Option.fromNullable(version)
  })

  const categoryGet = Effect.fn("EventoClient.categoryGet")(
    function*(category: string, options?: CategoryGetOptions) {
      // The empty category is legal: it reads the whole namespace (PROTOCOL.md §5.7).
      yield* requireString(category, "category name")
      const encoded = yield* encodeOptions("options", options, {
        position: "integer",
        batchSize: "integer",
        correlation: "string",
        consumerGroup: "object"
      })
      const group = Option.flatMapNullable(encoded, (o) => o["consumerGroup"])
      if (Option.isSome(group) && !consumerGroupOk(group.value)) {
        return yield* invalid("options.consumerGroup must have integer member and size")
      }
      yield* Effect.annotateCurrentSpan("eventodb.category", category)
      const rows = yield* call(
        { method: "category.get" },
        withOptions([category], encoded),
        Protocol.CategoryRows,
        "an array of [id, streamName, type, position, globalPosition, data, metadata, time]"
      )
      return rows.map(fromCategoryRow)
    }
  )

  const namespaceCreate = Effect.fn("EventoClient.namespaceCreate")(
    function*(namespace: string, options?: NamespaceCreateOptions) {
      yield* requireName(namespace, "namespace")
      const plain = isObject(options) && !isAbsent(options.token)
        ? { ...options, token: Redacted.isRedacted(options.token) ? Redacted.value(options.token) : options.token }
        : options
      const encoded = yield* encodeOptions("options", plain, {
        description: "string",
        token: "string",
        metadata: "object"
      })
      return yield* call(
        { method: "ns.create", namespace },
        withOptions([namespace], encoded),
        Protocol.NamespaceCreated,
        "{namespace, token, createdAt}"
      )
    }
  )

  const namespaceDelete = Effect.fn("EventoClient.namespaceDelete")(function*(namespace: string) {
    yield* requireName(namespace, "namespace")
    return yield* call(
      { method: "ns.delete", namespace },
      [namespace],
      Protocol.NamespaceDeleted,
      "{namespace, deletedAt, messagesDeleted}"
    )
  })

  const namespaceList = call(
    { method: "ns.list" },
    [],
    Protocol.NamespaceSummaries,
    "an array of {namespace, description, createdAt, messageCount}"
  ).pipe(Effect.withSpan("EventoClient.namespaceList"))

  const namespaceInfo = Effect.fn("EventoClient.namespaceInfo")(function*(namespace: string) {
    yield* requireName(namespace, "namespace")
    return yield* call(
      { method: "ns.info", namespace },
      [namespace],
      Protocol.NamespaceInfo,
      "{namespace, description, createdAt, messageCount, streamCount, lastActivity}"
    )
  })

  const namespaceStreams = Effect.fn("EventoClient.namespaceStreams")(function*(options?: NamespaceStreamsOptions) {
    const encoded = yield* encodeOptions("options", options, { prefix: "string", cursor: "string", limit: "integer" })
    // ns.streams takes its options as the first argument; the namespace is the token's (PROTOCOL.md §5.12).
    return yield* call(
      { method: "ns.streams" },
      Option.match(encoded, { onNone: () => [], onSome: (o) => [o] }),
      Protocol.StreamSummaries,
      "an array of {stream, version, lastActivity}"
    )
  })

  const namespaceCategories = call(
    { method: "ns.categories" },
    [],
    Protocol.CategorySummaries,
    "an array of {category, streamCount, messageCount}"
  ).pipe(Effect.withSpan("EventoClient.namespaceCategories"))

  const systemVersion = call({ method: "sys.version" }, [], Protocol.SystemVersion, "a version string").pipe(
    Effect.withSpan("EventoClient.systemVersion")
  )

  const systemHealth = call({ method: "sys.health" }, [], Protocol.Health, "{status}").pipe(
    Effect.withSpan("EventoClient.systemHealth")
  )

  const withToken = Effect.fn("EventoClient.withToken")(function*(next: string | Redacted.Redacted<string>) {
    const redacted = toRedacted(next)
    const namespace = yield* namespaceOf(redacted)
    return fromConnection({ ...connection, token: redacted, namespace })
  })

  return {
    namespace: connection.namespace,
    streamWrite,
    streamGet,
    streamLast,
    streamVersion,
    categoryGet,
    namespaceCreate,
    namespaceDelete,
    namespaceList,
    namespaceInfo,
    namespaceStreams,
    namespaceCategories,
    systemVersion,
    systemHealth,
    subscribe: (target, options) => Sse.subscribe(connection, target, options),
    withToken
  }
}

/**
 * The base URL without trailing slashes, or why it is unusable. Refused at construction: a URL that can never work
 * would otherwise fail every call as `EventoUnavailable`, and callers would back off forever as if the server were down.
 */
const baseUrlOf = (url: unknown): Effect.Effect<string, InvalidRequest> => {
  if (typeof url !== "string") return invalid("url must be a string such as http://127.0.0.1:8080")
  if (!URL.canParse(url)) return invalid(`url ${JSON.stringify(url)} is not an absolute URL`)
  const parsed = new URL(url)
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    return invalid(`url ${JSON.stringify(url)} must use http or https, not ${parsed.protocol}`)
  }
  // The client appends "/rpc" and "/subscribe" to the URL: a query or fragment would swallow them.
  if (parsed.search !== "" || parsed.hash !== "") {
    return invalid(`url ${JSON.stringify(url)} must have no query or fragment`)
  }
  return Effect.succeed(url.replace(/\/+$/, ""))
}

/** The call timeout: a positive duration (infinity means none). Duration.decode would turn -1 or NaN into zero. */
const timeoutOf = (timeout: unknown): Effect.Effect<Duration.Duration, InvalidRequest> => {
  if (timeout === undefined) return Effect.succeed(defaultTimeout)
  return Option.match(Duration.decodeUnknown(timeout), {
    onNone: () => invalid(`timeout ${String(timeout)} is not a duration`),
    onSome: (duration) =>
      Duration.greaterThan(duration, Duration.zero)
        ? Effect.succeed(duration)
        : invalid(`timeout ${String(timeout)} must be a positive duration`)
  })
}

/** `EventoClient.make`: checks the URL and timeout, decodes the namespace from the token, captures the `HttpClient`. */
export const make = (
  options: Options
): Effect.Effect<EventoClient.Service, EventoAuthError | InvalidRequest, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    if (!isObject(options)) return yield* invalid("options must be an object with url and token")
    const baseUrl = yield* baseUrlOf(options.url)
    const timeout = yield* timeoutOf(options.timeout)
    const http = yield* HttpClient.HttpClient
    const token = toRedacted(options.token)
    const namespace = yield* namespaceOf(token)
    return fromConnection({ http, baseUrl, token, namespace, timeout })
  })
