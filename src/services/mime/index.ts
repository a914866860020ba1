/**
 * The MIME layer: structure parsing, header decoding, the XIMSS XML presentation, reply
 * templates, message composition and part access for HTTP.
 */
export type { Address, HeaderField, MimePart, PartResolver, ResolvedFile } from './types.js';
export { headerValue, headerValues } from './fields.js';
export { findPart, parseHeaderBlock, parseMime } from './parse.js';
export { addressDisplay, decodeHeaderText, parseAddressList, parseDateHeader, parsePriority } from './headers.js';
export { parseMailAddress } from './address.js';
export { messageToXml } from './to-xml.js';
export { replyTemplate, type ReplyMode } from './reply.js';
export { composeMessage } from './compose.js';
export { contentTypeOf, decodePartBody, findRelated, partBytes, partHeaderBytes } from './parts.js';
export { decodeTextForSearch, SEARCH_TEXT_BYTES } from './text.js';
