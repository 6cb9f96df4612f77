import type { RequestOptions } from "../http.js";

/** Every key of T, each one mandatory to write down (undefined allowed): mapping options to a
 * query this way fails to compile when the server grows a parameter the SDK does not pass. */
export type AllKeys<T> = { [K in keyof Required<T>]: T[K] | undefined };

/** The per-call options, picked out of a method's options object. */
export function requestOptions(options: RequestOptions | undefined): RequestOptions {
  if (!options) return {};
  const { signal, timeout, maxRetries } = options;
  return { signal, timeout, maxRetries };
}

/** Only the fields the caller set: the server applies its defaults to the others. */
export function setFields<T extends object>(fields: T): Partial<T> {
  return Object.fromEntries(
    Object.entries(fields).filter(([, value]) => value !== undefined),
  ) as Partial<T>;
}
