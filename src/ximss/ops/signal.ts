import { MakeCall } from '../../services/calls/junction.js';
import { CallRefused } from '../../services/calls/service.js';
import { digitOfEvent, eventOfDigit } from '../../media/dtmf.js';
import { ServiceError } from '../../services/errors.js';
import { el } from '../../xml/element.js';
import { inSession, requiredAttr, type OperationTable, type SessionContext } from '../engine.js';
import { sdpOfRequest, XimssCallLeg } from '../call-leg.js';

/**
 * Spec section "Signaling", the calls (signalBind/signalUnbind are in im.ts): each operation
 * finds the session's call and hands the request to it (src/ximss/call-leg.ts), which turns
 * it into signals for the call engine (src/services/calls/).
 */

const CALL_LEG = /^[\x21-\x7e]{1,128}$/;
const MAX_INFO = 16 * 1024;
const MAX_TARGETS = 16;

function legOf(ctx: SessionContext): XimssCallLeg {
  const callLeg = requiredAttr(ctx.request, 'callLeg');
  const leg = ctx.session.calls?.legs.get(callLeg);
  if (!leg) throw new ServiceError(`unknown call ${JSON.stringify(callLeg.slice(0, 128))}`);
  return leg;
}

/** A signalCode attribute: a SIP final status code (3xx–6xx), or the default. */
function signalCodeOf(ctx: SessionContext, fallback: number): number {
  const value = ctx.request.attrs.signalCode;
  if (value === undefined || value === '') return fallback;
  if (!/^\d{3}$/.test(value) || Number(value) < 300 || Number(value) > 699) throw new ServiceError('signalCode is a SIP final status code, 300 to 699');
  return Number(value);
}

/** Browser clients say media="WebRTC" and read it back on the response. */
function echoMedia(ctx: SessionContext): void {
  const media = ctx.request.attrs.media;
  if (media !== undefined && media !== '') ctx.responseAttrs = { media };
}

function sdp(ctx: SessionContext): string | undefined {
  return sdpOfRequest(ctx.request);
}

export const signalOperations: OperationTable = {
  callStart: inSession((ctx) => {
    const callLeg = requiredAttr(ctx.request, 'callLeg');
    if (!CALL_LEG.test(callLeg)) throw new ServiceError('callLeg is 1 to 128 printable characters');
    if (callLeg.startsWith('inp')) throw new ServiceError('the inp prefix is for the server\'s incoming calls');
    const peer = requiredAttr(ctx.request, 'peer');
    if (peer.length > 512) throw new ServiceError('peer is too long');
    const peerName = ctx.request.attrs.peerName;
    const offer = sdp(ctx);
    echoMedia(ctx);
    try {
      XimssCallLeg.start(ctx.server.calls, ctx.session, callLeg, peer, peerName, offer, /^webrtc$/i.test(ctx.request.attrs.media ?? ''));
    } catch (err) {
      if (err instanceof CallRefused) throw new ServiceError(err.message);
      throw err;
    }
  }),

  callKill: inSession((ctx) => {
    legOf(ctx).kill();
  }),

  callProvision: inSession((ctx) => {
    const leg = legOf(ctx);
    echoMedia(ctx);
    leg.provision(sdp(ctx));
  }),

  callAccept: inSession((ctx) => {
    const leg = legOf(ctx);
    echoMedia(ctx);
    leg.accept(sdp(ctx));
  }),

  callReject: inSession((ctx) => {
    const leg = legOf(ctx);
    leg.reject(signalCodeOf(ctx, 603));
  }),

  callRedirect: inSession((ctx) => {
    const leg = legOf(ctx);
    const targets = ctx.request.elements('To').map((to) => to.text().trim());
    if (targets.length === 0) throw new ServiceError('callRedirect needs at least one To element');
    if (targets.length > MAX_TARGETS) throw new ServiceError(`callRedirect takes at most ${MAX_TARGETS} To elements`);
    if (targets.some((t) => t === '' || t.length > 512)) throw new ServiceError('a To element is empty or too long');
    leg.redirect(targets, ctx.request.attrs.fork === 'yes');
  }),

  callUpdate: inSession((ctx) => {
    const leg = legOf(ctx);
    echoMedia(ctx);
    leg.update(sdp(ctx), ctx.request.attrs.tag || undefined);
  }),

  callUpdateAccept: inSession((ctx) => {
    const leg = legOf(ctx);
    echoMedia(ctx);
    leg.updateAccept(sdp(ctx));
  }),

  callUpdateReject: inSession((ctx) => {
    const leg = legOf(ctx);
    const errorText = ctx.request.attrs.errorText;
    leg.updateReject(signalCodeOf(ctx, 488), errorText ? errorText.slice(0, 256) : undefined);
  }),

  /** callSendDTMF: the body is one code, 0–9, 10 for *, 11 for #, 12–15 for A–D (the characters are taken too). */
  callSendDTMF: inSession((ctx) => {
    const leg = legOf(ctx);
    const text = ctx.request.text().trim();
    const digits = dtmfDigit(text);
    if (digits === undefined) throw new ServiceError(`the DTMF code is 0 to 15 (10 for *, 11 for #), not ${JSON.stringify(text.slice(0, 20))}`);
    leg.sendOp({ kind: 'dtmf', digits });
  }),

  callSendInfo: inSession((ctx) => {
    const leg = legOf(ctx);
    const mime = ctx.request.element('MIME');
    if (!mime) throw new ServiceError('callSendInfo needs a MIME element');
    const type = mime.attrs.type?.trim();
    if (!type || !/^[\w.+-]{1,64}$/.test(type)) throw new ServiceError('the MIME type attribute is missing or not a type');
    const subtype = mime.attrs.subtype?.trim();
    if (subtype !== undefined && subtype !== '' && !/^[\w.+-]{1,64}$/.test(subtype)) throw new ServiceError('the MIME subtype is not a subtype');
    const body = mime.text();
    if (body.length > MAX_INFO) throw new ServiceError(`the INFO content is longer than ${MAX_INFO} characters`);
    leg.sendOp({ kind: 'info', contentType: subtype ? `${type}/${subtype}` : type, body });
  }),

  /** callTransfer: blind to `peer`, or attended with `otherLeg` (then `peer` is ignored). */
  callTransfer: inSession((ctx) => {
    const leg = legOf(ctx);
    const otherLeg = ctx.request.attrs.otherLeg;
    if (otherLeg !== undefined && otherLeg !== '') {
      const other = ctx.session.calls?.legs.get(otherLeg);
      if (!other) throw new ServiceError(`unknown call ${JSON.stringify(otherLeg.slice(0, 128))}`);
      leg.transferTo(undefined, other);
      return;
    }
    const peer = requiredAttr(ctx.request, 'peer');
    if (peer.length > 512) throw new ServiceError('peer is too long');
    leg.transferTo(peer, undefined);
  }),

  /**
   * makeCall: the account's devices ring (not this session), and the one that answers is
   * connected to `peer`; makeCallReport messages tell how it goes, an empty one that it is over.
   */
  makeCall: inSession((ctx) => {
    const peer = requiredAttr(ctx.request, 'peer');
    if (peer.length > 512) throw new ServiceError('peer is too long');
    const session = ctx.session;
    const account = session.account;
    const self = { address: `${account.name}@${account.domain}`, name: account.realName || undefined };
    const exclude = session.im?.bound ? { accountId: account.id, resource: session.im.resource } : undefined;
    const report = (status: string): void => {
      if (!session.closed) session.sendAsync(el('makeCallReport', undefined, status));
    };
    try {
      new MakeCall(ctx.server.calls, self, account.id, peer, exclude, report, (outcome) => {
        if (!outcome.ok) report(`failed: ${outcome.reason}`);
        report('');
      });
    } catch (err) {
      if (err instanceof CallRefused) throw new ServiceError(err.message);
      throw err;
    }
  }),
};

/** A callSendDTMF body as the digit it stands for. */
function dtmfDigit(text: string): string | undefined {
  if (/^\d{1,2}$/.test(text)) return digitOfEvent(Number(text));
  return eventOfDigit(text) === undefined ? undefined : text.toUpperCase();
}
