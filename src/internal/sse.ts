/**
 * `EventoClient.subscribe`: SSE pokes from `GET /subscribe`, reconnecting and resuming after a drop.
 */
import * as Sse from "@effect/experimental/Sse"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import type { Poke, SubscribeOptions, SubscribeTarget } from "../EventoClient.js"
import {
  type EventoError,
  EventoProtocolError,
  EventoTimeout,
  EventoUnavailable,
  InvalidRequest
} from "../EventoError.js"
import type { Connection } from "./client.js"

/**
 * Feeds the parser one line at a time. The parser rescans its buffer from the start for every line it finds, so one
 * large chunk (a replay of a thousand pokes arrives as one) costs time quadratic in its size; single lines do not.
 */
export const feedLines = (parser: Sse.Parser, text: string): Sse.SseError | undefined => {
  let start = 0
  while (start < text.length) {
    const newline = text.indexOf("\n", start)
    const end = newline === -1 ? text.length : newline + 1
    const error = parser.feed(text.slice(start, end))
    if (error !== undefined) return error
    start = end
  }
  return undefined
}
import * as Protocol from "./protocol.js"

/** First reconnect delay; doubles per failed attempt, jittered. */
export const reconnectBase: Duration.Duration = Duration.millis(100)

/** Longest wait between two reconnect attempts. */
export const reconnectCap: Duration.Duration = Duration.seconds(5)

const context: Protocol.CallContext = { method: "subscribe" }

type Item = { readonly _tag: "Connected" } | { readonly _tag: "Poke"; readonly poke: Poke }

const connected: Item = { _tag: "Connected" }

/**
 * Only failures of the connection are retried. Auth failures end the stream at once (LESSONS 18), and so do
 * 4xx answers and protocol errors: asking again would get the same answer.
 */
const isRetryable = (error: EventoError): boolean =>
  error._tag === "EventoUnavailable" || error._tag === "EventoTimeout" ||
  (error._tag === "EventoServerError" && error.status >= 500)

const validate = (target: SubscribeTarget, options: SubscribeOptions | undefined): Option.Option<string> => {
  const position = options?.position
  if (position !== undefined && !Number.isInteger(position)) return Option.some("position must be an integer")
  if (typeof target !== "object" || target === null) return Option.some("target must be an object")
  if ("stream" in target) {
    return typeof target.stream === "string" && target.stream.length > 0
      ? Option.none()
      : Option.some("target.stream must be a non-empty string")
  }
  if ("category" in target) {
    if (typeof target.category !== "string" || target.category.length === 0) {
      return Option.some("target.category must be a non-empty string")
    }
    const group = target.consumerGroup
    if (group === undefined) return Option.none()
    const ok = Number.isInteger(group.member) && Number.isInteger(group.size) && group.member >= 0 &&
      group.member < group.size
    return ok ? Option.none() : Option.some("target.consumerGroup needs integers 0 <= member < size")
  }
  return "all" in target && target.all === true
    ? Option.none()
    : Option.some("target must be { stream }, { category, consumerGroup? } or { all: true }")
}

const urlParams = (target: SubscribeTarget, position: number): Record<string, string> => {
  const from = { position: String(position) }
  if ("stream" in target) return { stream: target.stream, ...from }
  if ("category" in target) {
    const group = target.consumerGroup
    return group === undefined
      ? { category: target.category, ...from }
      : { category: target.category, consumer: String(group.member), size: String(group.size), ...from }
  }
  return { all: "true", ...from }
}

const describe = (target: SubscribeTarget): string =>
  "stream" in target ? `stream:${target.stream}` : "category" in target ? `category:${target.category}` : "all"

/** An error answer to `/subscribe`. Validation errors come as 400 plain text, not JSON (PROTOCOL.md §3). */
const fromStatus = (status: number, body: string): EventoError => {
  const error = Protocol.fromResponse(context, status, body)
  return status === 400 && error._tag === "EventoProtocolError"
    ? new InvalidRequest({ message: `subscribe: ${body.trim() || "bad request"}` })
    : error
}

/** The poke stream of one subscription, across any number of connections. */
export const subscribe = (
  connection: Connection,
  target: SubscribeTarget,
  options?: SubscribeOptions
): Stream.Stream<Poke, EventoError> => {
  const problem = validate(target, options)
  if (Option.isSome(problem)) return Stream.fail(new InvalidRequest({ message: `subscribe: ${problem.value}` }))

  const { baseUrl, timeout, token } = connection
  // The request lives as long as the stream's scope: ending, failing or interrupting the stream closes the socket,
  // so a reconnect never leaves the previous connection open beside it (LESSONS 19).
  const http = HttpClient.withScope(connection.http)
  const annotate = Effect.annotateLogs({ package: "eventodb-kit", module: "EventoClient", target: describe(target) })
  const keyOf = (poke: Poke) => ("stream" in target ? poke.position : poke.globalPosition)

  const timedOut = () =>
    new EventoTimeout({ method: "subscribe", message: `subscribe: no answer within ${Duration.format(timeout)}` })

  const unavailable = (error: { readonly message: string }) =>
    new EventoUnavailable({ message: `subscribe: EventoDB is unreachable (${error.message})`, cause: error })

  // One connection from `next`: a `Connected` marker once the server accepted it, then its pokes. It fails when
  // the connection drops or the server ends the stream, so the caller reconnects.
  const connect = (next: Ref.Ref<number>): Stream.Stream<Item, EventoError> =>
    Stream.unwrapScoped(Effect.gen(function*() {
      const position = yield* Ref.get(next)
      const request = HttpClientRequest.get(`${baseUrl}/subscribe`, { urlParams: urlParams(target, position) }).pipe(
        HttpClientRequest.bearerToken(token),
        HttpClientRequest.accept("text/event-stream")
      )
      // Only the answer's headers are timed: silence afterwards is normal (no heartbeats, LESSONS 20).
      const response = yield* http.execute(request).pipe(
        Effect.mapError(unavailable),
        Effect.timeoutFail({ duration: timeout, onTimeout: timedOut })
      )
      const contentType = response.headers["content-type"] ?? ""
      if (response.status !== 200 || !contentType.startsWith("text/event-stream")) {
        const body = yield* response.text.pipe(
          Effect.mapError(unavailable),
          Effect.timeoutFail({ duration: timeout, onTimeout: timedOut })
        )
        return yield* Effect.fail(
          response.status === 200
            ? new EventoProtocolError({
              message: `subscribe: expected text/event-stream, got ${contentType || "no content type"} with ${
                Protocol.excerpt(body)
              }`
            })
            : fromStatus(response.status, body)
        )
      }
      yield* Effect.logDebug("EventoClient subscription connected").pipe(
        Effect.annotateLogs("position", position),
        annotate
      )

      const events: Array<Sse.Event> = []
      const parser = Sse.makeParser((event) => {
        if (event._tag === "Event") events.push(event)
      })
      const pokes = response.stream.pipe(
        Stream.mapError(unavailable),
        Stream.decodeText(),
        Stream.mapConcatEffect((text) => {
          const error = feedLines(parser, text)
          const parsed = events.splice(0)
          return error === undefined
            ? Effect.succeed(parsed)
            : Effect.fail(new EventoProtocolError({ message: `subscribe: ${error.message}` }))
        }),
        // Comments (`: ready`) never reach here; other event names are not pokes.
        Stream.filter((event) => event.event === "poke"),
        Stream.mapEffect((event) =>
          Protocol.decodeResult(context, Protocol.Poke, "a poke {stream, position, globalPosition}", event.data)
        ),
        // Replays after a reconnect start at `next`; anything older is a duplicate.
        Stream.filterEffect((poke) => Effect.map(Ref.get(next), (from) => keyOf(poke) >= from)),
        Stream.tap((poke) => Ref.set(next, keyOf(poke) + 1)),
        Stream.map((poke): Item => ({ _tag: "Poke", poke }))
      )
      return Stream.make(connected).pipe(
        Stream.concat(pokes),
        // The server ends the stream on shutdown: that is a drop too (LESSONS 17).
        Stream.concat(Stream.fail(new EventoUnavailable({ message: "subscribe: the server closed the stream" })))
      )
    }))

  const reconnect = Schedule.exponential(reconnectBase).pipe(
    Schedule.modifyDelay((delay) => Duration.min(delay, reconnectCap)),
    Schedule.jittered,
    Schedule.whileInput(isRetryable),
    Schedule.tapInput((error: EventoError) =>
      isRetryable(error)
        ? Effect.logWarning("EventoClient subscription lost; reconnecting").pipe(
          Effect.annotateLogs({ error: error._tag, reason: error.message }),
          annotate
        )
        : Effect.void
    )
  )

  return Stream.unwrap(Effect.map(Ref.make(options?.position ?? 0), (next) =>
    Stream.suspend(() => connect(next)).pipe(
      // `Stream.retry` restarts its schedule whenever an element passes: the `Connected` marker resets the
      // backoff after every successful connection, quiet or not.
      Stream.retry(reconnect),
      Stream.filterMap((item) => item._tag === "Poke" ? Option.some(item.poke) : Option.none())
    )))
}
