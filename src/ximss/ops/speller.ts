import { ServiceError } from '../../services/errors.js';
import { processSpeller } from '../../services/speller/service.js';
import { el } from '../../xml/element.js';
import { inSession, type OperationTable } from '../engine.js';

/**
 * Spec section "Service": spellerList and spellerCheck (src/services/speller/). The text
 * is the request's body, XML-decoded; each misspelled word is one spellerReport with its
 * position and size (UTF-8 bytes, or characters with mode="glyphs") and its guesses.
 */
export const spellerOperations: OperationTable = {
  spellerList: inSession((ctx) => {
    for (const name of processSpeller(ctx.server.log).list()) ctx.send(el('speller', { speller: name }));
  }),

  spellerCheck: inSession(async (ctx) => {
    const speller = processSpeller(ctx.server.log);
    const chosen = speller.resolve(ctx.request.attrs.speller, ctx.session.language);
    if (ctx.request.elements().length > 0) throw new ServiceError('the text to check must be plain text');
    const text = ctx.request.text();
    if (text.trim() === '') return;
    const limits = ctx.server.config.limits;
    const reports = await speller.check(chosen, text, ctx.request.attrs.mode === 'glyphs', {
      textBytes: limits.spellerTextBytes,
      words: limits.spellerWords,
      guessWords: limits.spellerGuessWords,
      guessSeconds: limits.spellerGuessSeconds,
      pending: limits.spellerPending,
    });
    for (const report of reports) {
      ctx.send(el('spellerReport', { position: report.position, size: report.size }, ...report.guesses.map((guess) => el('guess', undefined, guess))));
    }
  }),
};
