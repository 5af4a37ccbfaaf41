/**
 * An `HttpClient` that hands every request to a protocol `Handler` in the same process: no sockets, but the same
 * bytes, statuses and headers the Node server would send. SSE bodies arrive as a web `ReadableStream` that pulls
 * pokes as the reader reads, so a slow reader fills its buffer exactly as over TCP.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type * as Protocol from "./protocol.js"

const decoder = new TextDecoder()

const bodyText = (
  request: HttpClientRequest.HttpClientRequest
): Effect.Effect<string, HttpClientError.RequestError> => {
  const body = request.body
  switch (body._tag) {
    case "Empty":
      return Effect.succeed("")
    case "Uint8Array":
      return Effect.succeed(decoder.decode(body.body))
    case "Raw":
      return Effect.succeed(
        typeof body.body === "string" ? body.body : body.body instanceof Uint8Array ? decoder.decode(body.body) : ""
      )
    case "Stream":
      return Stream.runFold(body.stream, "", (text, chunk) => text + decoder.decode(chunk, { stream: true })).pipe(
        Effect.mapError((cause) => new HttpClientError.RequestError({ request, reason: "Encode", cause }))
      )
    case "FormData":
      return Effect.fail(
        new HttpClientError.RequestError({ request, reason: "Encode", description: "form bodies are not supported" })
      )
  }
}

// Ends the SSE body when the request's fiber or scope is done with the response.
const aborted = (signal: AbortSignal): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    if (signal.aborted) return resume(Effect.void)
    const onAbort = () => resume(Effect.void)
    signal.addEventListener("abort", onAbort, { once: true })
    return Effect.sync(() => signal.removeEventListener("abort", onAbort))
  })

/** A client whose every request is answered by `handler`. */
export const make = (handler: Protocol.Handler): HttpClient.HttpClient =>
  HttpClient.make((request, url, signal) =>
    Effect.gen(function*() {
      const body = yield* bodyText(request)
      const answer = yield* handler.handle({
        method: request.method,
        url: `${url.pathname}${url.search}`,
        headers: request.headers,
        body
      })
      const webBody = typeof answer.body === "string" ?
        answer.body :
        Stream.toReadableStream(Stream.interruptWhen(answer.body, aborted(signal)))
      return HttpClientResponse.fromWeb(
        request,
        new Response(webBody, { status: answer.status, headers: answer.headers })
      )
    })
  )
