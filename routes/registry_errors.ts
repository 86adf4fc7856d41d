/**
 * Awaits a registry call, turning store errors into ApiErrors for the app's
 * one error handler (registry errors are ApiErrors already).
 */
import { storeApiError } from "./store_errors.ts";

export async function domainCall<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    throw storeApiError(e) ?? e;
  }
}
