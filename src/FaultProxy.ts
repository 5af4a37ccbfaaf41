/**
 * An HTTP proxy in front of any EventoDB (the in-process test server or a real one) that injects faults: downtime,
 * latency, error answers, garbage bodies, stalls and lost pokes. Fault tests go through it so that they run against
 * a real server too.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/faultProxy.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Base URL of the EventoDB to forward to, e.g. `http://127.0.0.1:8080`. */
  readonly upstream: string
}

/**
 * One request the proxy received.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProxiedRequest {
  readonly method: string
  /** Path and query string. */
  readonly path: string
}

/**
 * A request as `latencyWhen` sees it: its body read whole, as UTF-8 text.
 *
 * @since 0.1.0
 * @category models
 */
export interface MatchedRequest extends ProxiedRequest {
  /** The JSON-RPC body, e.g. `["stream.write","account-1",{...},{...}]`; empty for a GET. */
  readonly body: string
}

/**
 * @since 0.1.0
 * @category models
 */
export declare namespace FaultProxy {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Service {
    /** The proxy's base URL, on 127.0.0.1 and a free port. Point an `EventoClient` at it. */
    readonly url: string
    /** Stops listening and closes every connection, open subscriptions included: connections are refused. */
    readonly down: () => Effect.Effect<void>
    /** Listens again, on the same port. */
    readonly up: () => Effect.Effect<void>
    /** Delays every later request by `duration` before forwarding it; `0` turns it off. Default: none. */
    readonly latency: (duration: Duration.DurationInput) => Effect.Effect<void>
    /**
     * Delays every later request for which `predicate` holds by `duration` before forwarding it, after any
     * `latency`; a request whose client goes away meanwhile is never forwarded. Rules add up (the longest matching
     * delay wins) until `reset`. While a rule exists, request bodies are read whole before forwarding. Default: none.
     */
    readonly latencyWhen: (
      predicate: (request: MatchedRequest) => boolean,
      duration: Duration.DurationInput
    ) => Effect.Effect<void>
    /**
     * Answers the next `n` requests with `status` and `body` (a string as `text/plain`, anything else as JSON)
     * without forwarding them.
     */
    readonly failNext: (n: number, status: number, body?: unknown) => Effect.Effect<void>
    /** Answers the next `n` requests with HTTP 200 and a body that is not JSON. */
    readonly garbageNext: (n: number) => Effect.Effect<void>
    /** Holds every request, new or waiting, without answering until `duration` from now has passed. */
    readonly stall: (duration: Duration.DurationInput) => Effect.Effect<void>
    /** While on, SSE connections stay open but their pokes are not forwarded. Default: off. */
    readonly dropPokes: (on: boolean) => Effect.Effect<void>
    /** Clears every fault and comes back up. */
    readonly reset: () => Effect.Effect<void>
    /** How many SSE connections are open through the proxy now. */
    readonly openSubscriptions: Effect.Effect<number>
    /** Every request received so far, oldest first. */
    readonly requests: Effect.Effect<ReadonlyArray<ProxiedRequest>>
  }
}

/**
 * @since 0.1.0
 * @category models
 */
export class FaultProxy extends Context.Tag("eventodb-kit/FaultProxy")<FaultProxy, FaultProxy.Service>() {}

/**
 * Starts the proxy on 127.0.0.1 (a free port); it stops, closing every connection, when the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options: Options) => Effect.Effect<FaultProxy.Service, never, Scope.Scope> = internal.make

/**
 * The proxy as a layer.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { FaultProxy } from "eventodb-kit/testing"
 *
 * const program = Effect.gen(function*() {
 *   const proxy = yield* FaultProxy.FaultProxy
 *   yield* proxy.down()
 *   // ... calls through proxy.url now fail with EventoUnavailable
 *   yield* proxy.up()
 * }).pipe(Effect.provide(FaultProxy.layer({ upstream: "http://127.0.0.1:8080" })))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<FaultProxy> => Layer.scoped(FaultProxy, make(options))
