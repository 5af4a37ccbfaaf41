/**
 * Test support: an in-memory EventoDB with the real server's semantics (`EventoMemory`, no sockets), the same store
 * served over HTTP (`EventoTestServer`), and a fault-injecting proxy in front of any EventoDB (`FaultProxy`).
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export * as EventoMemory from "./EventoMemory.js"

/**
 * @since 0.1.0
 */
export * as EventoTestServer from "./EventoTestServer.js"

/**
 * @since 0.1.0
 */
export * as FaultProxy from "./FaultProxy.js"
