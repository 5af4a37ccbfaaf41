/**
 * Namespace tokens: `ns_` + base64url(namespace, no padding) + `_` + 64 hex characters.
 */
import * as Either from "effect/Either"

const base64url = /^[A-Za-z0-9-]+$/
const hex64 = /^[0-9a-fA-F]{64}$/
const utf8 = new TextDecoder("utf-8", { fatal: true })

/**
 * The plaintext namespace of a token (LESSONS 27), decoded as UTF-8 (LESSONS 28), or why the token does not parse.
 * The rules are the server's: a token the server would refuse as malformed is refused here too.
 */
export const decodeNamespace = (token: unknown): Either.Either<string, string> => {
  // JavaScript callers and decoded configuration can hand over anything; refuse it rather than throw on it.
  if (typeof token !== "string") {
    return Either.left(`a token is a string, not ${token === null ? "null" : typeof token}`)
  }
  if (!token.startsWith("ns_")) return Either.left("a token starts with \"ns_\"")
  const parts = token.slice(3).split("_")
  if (parts.length !== 2) return Either.left(`a token has 2 parts after \"ns_\", this one has ${parts.length}`)
  const [encoded, secret] = parts as [string, string]
  if (!hex64.test(secret)) return Either.left("the last part of a token is 64 hex characters")
  // Buffer's base64url decoder skips characters it does not know; check the alphabet first so garbage is refused.
  if (!base64url.test(encoded) || encoded.length % 4 === 1) {
    return Either.left("the namespace part of a token is base64url without padding")
  }
  try {
    const namespace = utf8.decode(Buffer.from(encoded, "base64url"))
    return namespace.length === 0 ? Either.left("the namespace part of a token is empty") : Either.right(namespace)
  } catch {
    return Either.left("the namespace part of a token is not UTF-8")
  }
}

/** A token for `namespace` with the given secret, for tests and the dev server. */
export const encode = (namespace: string, secret: string): string =>
  `ns_${Buffer.from(namespace, "utf8").toString("base64url")}_${secret}`
