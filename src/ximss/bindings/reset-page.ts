import { fullName } from '../../services/accounts.js';
import { ServiceError } from '../../services/errors.js';
import type { PasswordRecovery } from '../../services/password-recovery.js';
import { escapeHtml } from '../../services/mime/text.js';
import type { HttpReply } from './http-session.js';

/**
 * The page a password-reset link (recoverPassword) opens: GET shows a form for a new
 * password, POST (form-encoded: token, password, confirm) sets it and uses the link up.
 */
export const RESET_PATH = /^\/resetpassword\/?$/i;

const HTML_HEADERS = {
  'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};

function page(status: number, title: string, content: string): HttpReply {
  const body =
    '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">' +
    `<title>${escapeHtml(title)}</title>` +
    '<style>body{font-family:sans-serif;max-width:28em;margin:3em auto;padding:0 1em}input{display:block;margin:.3em 0 1em;width:100%}</style>' +
    `</head><body><h1>${escapeHtml(title)}</h1>${content}</body></html>\n`;
  return { status, body, contentType: 'text/html; charset=utf-8', headers: HTML_HEADERS };
}

function form(token: string, account: string, error?: string): string {
  return (
    (error ? `<p><strong>${escapeHtml(error)}</strong></p>` : '') +
    `<p>New password for <b>${escapeHtml(account)}</b>:</p>` +
    '<form method="post" action="/ResetPassword">' +
    `<input type="hidden" name="token" value="${escapeHtml(token)}">` +
    '<label>New password<input type="password" name="password" autocomplete="new-password" required></label>' +
    '<label>Repeat it<input type="password" name="confirm" autocomplete="new-password" required></label>' +
    '<button type="submit">Set the password</button></form>'
  );
}

const INVALID = 'This link is not valid: it expired or was used already. Ask for a new one.';

export async function resetPasswordPage(recovery: PasswordRecovery, method: string, query: URLSearchParams, body: string): Promise<HttpReply> {
  if (method === 'GET') {
    const token = query.get('token') ?? '';
    const account = token ? await recovery.accountOf(token) : undefined;
    if (!account) return page(404, 'Password reset', `<p>${INVALID}</p>`);
    return page(200, 'Password reset', form(token, fullName(account)));
  }
  const fields = new URLSearchParams(body);
  const token = fields.get('token') ?? '';
  const password = fields.get('password') ?? '';
  const account = token ? await recovery.accountOf(token) : undefined;
  if (!account) return page(404, 'Password reset', `<p>${INVALID}</p>`);
  const name = fullName(account);
  if (password !== (fields.get('confirm') ?? '')) return page(400, 'Password reset', form(token, name, 'The two passwords differ.'));
  try {
    await recovery.reset(token, password);
  } catch (err) {
    if (!(err instanceof ServiceError)) throw err;
    return page(400, 'Password reset', form(token, name, err.message));
  }
  return page(200, 'Password changed', `<p>The password of <b>${escapeHtml(name)}</b> is changed. You can log in with it now.</p>`);
}
