import { ServiceError } from '../../services/errors.js';
import type { HttpCallRequest } from '../../services/http-call.js';
import type { RemoteResponse } from '../../services/remote-fetch.js';
import { el, xmlSafe, XmlElement } from '../../xml/element.js';
import { readValue, type XimssValue } from '../../xml/objects.js';
import { XmlParseError, parseXml } from '../../xml/parser.js';
import { requestProfile } from '../bindings/request-limits.js';
import { inSession, requiredAttr, type OperationTable, type SessionContext } from '../engine.js';

/**
 * Spec section "Service": retrieveXML and httpCall, the server making an HTTP request for the
 * user (src/services/http-call.ts decides where it may go and how many a user may make).
 *
 * retrieveXML `url [timeout]` answers `<retrievedXML url>` holding the document's root
 * element, read by the XML guard with the limits of a logged-in session's requests.
 *
 * httpCall `url [method] [timeout] [contentType] [responseFormat]` with a body of text, one
 * `body`, one `base64` or `field` elements (a form), and optionally `supplFields` (header
 * fields) and `urlParams` (query parameters), both dictionaries of subKey elements, answers
 * `<retrievedURL url responseCode responseText Content-Type=… …>` (the answer's header fields
 * as attributes) holding the answer's body: text, `<base64>`, or with responseFormat="XML"
 * the parsed document.
 */

/** `timeout` in seconds: a positive number. */
function timeoutOf(request: XmlElement): number | undefined {
  const raw = request.attrs.timeout ?? request.attrs.Timeout;
  if (raw === undefined || raw === '') return undefined;
  const seconds = Number(raw);
  if (!/^\d+(\.\d+)?$/.test(raw.trim()) || !(seconds > 0)) throw new ServiceError('the timeout attribute must be a number of seconds greater than 0');
  return seconds;
}

function urlOf(request: XmlElement): URL {
  const text = requiredAttr(request, 'url');
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ServiceError(`invalid url: ${JSON.stringify(text.slice(0, 100))}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ServiceError('the url must be http or https');
  if (url.username !== '' || url.password !== '') throw new ServiceError('the url must not carry a user name or password');
  return url;
}

/** The charset an answer's text is in: its Content-Type's, else (XML) its declaration's, else UTF-8. */
function decodeText(body: Buffer, contentType: string | null): string {
  let charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType ?? '')?.[1];
  if (body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf) charset = 'utf-8';
  else if ((body[0] === 0xff && body[1] === 0xfe) || (body[0] === 0xfe && body[1] === 0xff)) charset = body[0] === 0xff ? 'utf-16le' : 'utf-16be';
  charset ??= /^<\?xml[^>]*\sencoding\s*=\s*["']([A-Za-z0-9._-]+)["']/.exec(body.subarray(0, 200).toString('latin1'))?.[1];
  let decoder: TextDecoder;
  try {
    decoder = new TextDecoder(charset ?? 'utf-8');
  } catch {
    throw new ServiceError(`the document's charset ${JSON.stringify((charset ?? '').slice(0, 40))} is not supported`);
  }
  return decoder.decode(body);
}

/** The answer as XML, read by the guard like a logged-in session's request. */
function documentOf(ctx: SessionContext, response: RemoteResponse): XmlElement {
  const text = decodeText(response.body, response.headers.get('content-type')).replace(/^\uFEFF/, '');
  try {
    return parseXml(text, requestProfile(ctx.server.config.limits, true).xml);
  } catch (err) {
    if (err instanceof XmlParseError) throw new ServiceError(`the document is not XML: ${err.message}`);
    throw err;
  }
}

/** Answers that are read as text unless responseFormat says otherwise. */
const TEXTUAL = /^(text\/|application\/([a-z0-9.+-]*\+)?(xml|json|javascript|ecmascript|x-www-form-urlencoded)\b|[a-z]+\/[a-z0-9.-]*\+(xml|json)\b)/i;

/** A dictionary (supplFields, urlParams) of strings. */
function stringDictionary(element: XmlElement, what: string): [string, string][] {
  if (element.elements().some((child) => child.name !== 'subKey')) throw new ServiceError(`${what} must hold subKey elements`);
  let value: XimssValue;
  try {
    value = readValue(element);
  } catch (err) {
    throw new ServiceError(`${what}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (typeof value === 'string') {
    if (value.trim() === '') return [];
    throw new ServiceError(`${what} must hold subKey elements`);
  }
  if (Buffer.isBuffer(value) || Array.isArray(value)) throw new ServiceError(`${what} must hold subKey elements`);
  return Object.keys(value).map((key) => {
    const item = value[key];
    if (typeof item !== 'string') throw new ServiceError(`${what}: the value of ${JSON.stringify(key.slice(0, 60))} must be text`);
    return [key, item];
  });
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Header fields the server sets itself (framing, the connection, the host). */
const RESERVED_FIELDS = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'te', 'trailer', 'expect', 'proxy-authorization', 'proxy-connection', 'http2-settings']);
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']);
const ATTRIBUTES = new Set(['id', 'exeTime', 'url', 'method', 'timeout', 'Timeout', 'contentType', 'Content-Type', 'responseFormat']);

/** httpCall's request, read from its attributes and body. */
function callRequest(request: XmlElement): HttpCallRequest & { responseFormat: string | undefined } {
  for (const name of Object.keys(request.attrs)) {
    if (!ATTRIBUTES.has(name)) throw new ServiceError(`unknown httpCall attribute ${JSON.stringify(name.slice(0, 60))} (known: url, method, timeout, contentType, responseFormat)`);
  }
  const url = urlOf(request);
  const responseFormat = request.attrs.responseFormat;
  if (responseFormat !== undefined && !/^(text|binary|xml)$/i.test(responseFormat)) throw new ServiceError('the responseFormat attribute must be text, binary or XML');
  const headers: Record<string, string> = {};
  let body: HttpCallRequest['body'];
  const fields: XmlElement[] = [];
  let seenSuppl = false;
  let seenParams = false;
  const setBody = (value: NonNullable<HttpCallRequest['body']>): void => {
    if (body !== undefined) throw new ServiceError('the request body is given twice (text, body, base64 and field are alternatives)');
    body = value;
  };
  const text = request.text();
  if (text.trim() !== '') setBody(text);
  for (const child of request.elements()) {
    switch (child.name) {
      case 'body':
        if (child.elements().length > 0) throw new ServiceError('the body element must hold text');
        setBody(child.text());
        break;
      case 'base64': {
        const data = child.text().replace(/\s+/g, '');
        if (!/^[A-Za-z0-9+/]*={0,2}$/.test(data) || data.length % 4 === 1) throw new ServiceError('the base64 element is not base64');
        setBody(new Uint8Array(Buffer.from(data, 'base64')));
        break;
      }
      case 'field':
        fields.push(child);
        break;
      case 'supplFields':
        if (seenSuppl) throw new ServiceError('supplFields is given twice');
        seenSuppl = true;
        for (const [name, value] of stringDictionary(child, 'supplFields')) {
          if (!TOKEN.test(name)) throw new ServiceError(`supplFields: ${JSON.stringify(name.slice(0, 60))} is not a header field name`);
          if (RESERVED_FIELDS.has(name.toLowerCase())) throw new ServiceError(`supplFields: the ${name} field is set by the server`);
          if (/[\0\r\n]/.test(value)) throw new ServiceError(`supplFields: the value of ${name} has a line break`);
          headers[name] = value;
        }
        break;
      case 'urlParams':
        if (seenParams) throw new ServiceError('urlParams is given twice');
        seenParams = true;
        for (const [name, value] of stringDictionary(child, 'urlParams')) url.searchParams.append(name, value);
        break;
      default:
        throw new ServiceError(`unexpected <${child.name.slice(0, 60)}> in httpCall (text, body, base64, field, supplFields, urlParams)`);
    }
  }
  if (fields.length > 0) {
    const values = fields.map((field): [string, string | Buffer] => {
      const name = requiredAttr(field, 'name');
      let value: XimssValue;
      try {
        value = readValue(field);
      } catch (err) {
        throw new ServiceError(`field ${JSON.stringify(name.slice(0, 60))}: ${err instanceof Error ? err.message : String(err)}`);
      }
      if (typeof value !== 'string' && !Buffer.isBuffer(value)) throw new ServiceError(`field ${JSON.stringify(name.slice(0, 60))}: the value must be text or base64 data`);
      return [name, value];
    });
    if (values.some(([, value]) => Buffer.isBuffer(value))) {
      const form = new FormData();
      for (const [name, value] of values) {
        if (typeof value === 'string') form.append(name, value);
        else form.append(name, new Blob([new Uint8Array(value)]), name);
      }
      setBody(form);
    } else setBody(new URLSearchParams(values as [string, string][]));
  }
  const method = (request.attrs.method ?? (body === undefined ? 'GET' : 'POST')).toUpperCase();
  if (!METHODS.has(method)) throw new ServiceError(`the method must be one of ${[...METHODS].join(', ')}`);
  if (body !== undefined && (method === 'GET' || method === 'HEAD')) throw new ServiceError(`a ${method} request has no body`);
  const contentType = request.attrs.contentType ?? request.attrs['Content-Type'];
  if (contentType !== undefined) {
    if (/[\0\r\n]/.test(contentType)) throw new ServiceError('the contentType attribute has a line break');
    headers['Content-Type'] = contentType;
  }
  return { url, method, headers, body, timeoutSeconds: timeoutOf(request), responseFormat };
}

/** A header field name as an attribute name (`Content-Type`), when XML allows it. */
function fieldAttribute(name: string): string | undefined {
  const canonical = name.replace(/(^|-)([a-z])/g, (_, dash: string, letter: string) => dash + letter.toUpperCase());
  if (!/^[A-Za-z_][A-Za-z0-9._-]*$/.test(canonical) || /^(id|url|responseCode|responseText)$/i.test(canonical)) return undefined;
  return canonical;
}

export const remoteHttpOperations: OperationTable = {
  retrieveXML: inSession(async (ctx) => {
    const url = urlOf(ctx.request);
    const response = await ctx.server.httpCalls.request(
      ctx.session.userName,
      'retrieveXML',
      { url, timeoutSeconds: timeoutOf(ctx.request) },
      'application/xml, text/xml, */*;q=0.5',
    );
    if (response.status < 200 || response.status > 299) throw new ServiceError(`the document could not be retrieved: HTTP ${response.status}`);
    ctx.send(el('retrievedXML', { url: url.href }, documentOf(ctx, response)));
  }),

  httpCall: inSession(async (ctx) => {
    const { responseFormat, ...request } = callRequest(ctx.request);
    const url = request.url.href;
    const response = await ctx.server.httpCalls.request(ctx.session.userName, 'httpCall', request);
    const message = el('retrievedURL', { url, responseCode: response.status, responseText: xmlSafe(response.statusText) });
    for (const [name, value] of response.headers) {
      const attribute = fieldAttribute(name);
      if (attribute !== undefined && message.attrs[attribute] === undefined) message.attrs[attribute] = xmlSafe(value);
    }
    if (response.body.length > 0) {
      const contentType = response.headers.get('content-type');
      const format = responseFormat?.toLowerCase() ?? (TEXTUAL.test(contentType ?? '') ? 'text' : 'binary');
      if (format === 'xml') message.append(documentOf(ctx, response));
      else if (format === 'text') message.append(xmlSafe(decodeText(response.body, contentType)));
      else message.add('base64', undefined, response.body.toString('base64'));
    }
    ctx.send(message);
  }),
};
