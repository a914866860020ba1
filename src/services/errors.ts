/**
 * A failure to report to the client as it is: `text` becomes the XIMSS `errorText`, `code`
 * the `errorNum`. Services throw it; the session engine turns it into a response. Any other
 * exception is an internal error and is logged, not shown.
 */
export class ServiceError extends Error {
  constructor(
    message: string,
    readonly code = 500,
  ) {
    super(message);
  }
}

/** The exact text existing clients match to recognise a failed login. */
export const BAD_CREDENTIALS = 'incorrect password or account name';

/** A login refused without looking at the password: the client address has used up its budget. */
export const TOO_MANY_ATTEMPTS = 'too many failed login attempts; try again later';
