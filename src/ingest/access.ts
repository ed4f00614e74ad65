// Who may post: API keys (API_KEYS) and browser origins (CORS_ORIGINS), and the CORS preflight.
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import type { Responder } from './respond.js';

export class Access {
  readonly #apiKeys: ReadonlySet<string> | undefined;
  readonly #anyOrigin: boolean;
  readonly #origins: ReadonlySet<string> | undefined;

  constructor(apiKeys: readonly string[], corsOrigins: readonly string[]) {
    this.#apiKeys = apiKeys.length > 0 ? new Set(apiKeys) : undefined;
    this.#anyOrigin = corsOrigins.includes('*');
    this.#origins = corsOrigins.length > 0 ? new Set(corsOrigins) : undefined;
  }

  /** CORS_ORIGINS is set: preflights are answered and the Origin of a POST is checked. */
  get cors(): boolean {
    return this.#origins !== undefined;
  }

  /**
   * Whether a request with this Origin header may post. Without CORS_ORIGINS any may; with it,
   * a browser's Origin must be listed, and requests with none (SDKs on servers) pass.
   */
  originAllowed(origin: string): boolean {
    return origin === '' || this.#origins === undefined || this.#anyOrigin || this.#origins.has(origin);
  }

  /** The Origin to echo in access-control-allow-origin, or '' for none. */
  corsOrigin(origin: string): string {
    return origin !== '' && this.#origins !== undefined && (this.#anyOrigin || this.#origins.has(origin)) ? origin : '';
  }

  authorized(req: HttpRequest): boolean {
    const keys = this.#apiKeys;
    if (keys === undefined) return true;
    const bearer = req.getHeader('authorization');
    return (
      keys.has(req.getHeader('x-api-key')) ||
      // The scheme is case-insensitive (RFC 9110 §11.1).
      (bearer.length > 7 && bearer.slice(0, 7).toLowerCase() === 'bearer ' && keys.has(bearer.slice(7).trim())) ||
      // navigator.sendBeacon cannot set headers.
      keys.has(req.getQuery('api_key') ?? '')
    );
  }

  preflight(res: HttpResponse, req: HttpRequest, respond: Responder): void {
    const origin = this.corsOrigin(req.getHeader('origin'));
    respond.sendRaw(
      res,
      '204',
      origin === ''
        ? []
        : [
            ['access-control-allow-origin', origin],
            ['vary', 'origin'],
            ['access-control-allow-methods', 'POST, OPTIONS'],
            ['access-control-allow-headers', 'content-type, content-encoding, authorization, x-api-key'],
            ['access-control-max-age', '86400'],
          ],
    );
  }
}
