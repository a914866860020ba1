import { ServiceError } from '../../services/errors.js';
import { anytime, type OperationTable } from '../engine.js';

/**
 * Operations of the XIMSS specification this server does not implement yet, by section.
 * Each answers errorNum 500 with an honest errorText, before and after login, until the
 * section that owns it is built; then the name moves to that section's module.
 */
const PENDING: Record<string, string> = {
  Service:
    'cliExecute',
  'S/MIME': 'SMIMEUnlock SMIMELock SMIMEModifyPassword SMIMEGet SMIMESet',
  'RPOP/RSIP/RIMAP': 'rpopList rpopUpdate rsipList rsipUpdate rimapList rimapUpdate',
};

export const notImplementedOperations: OperationTable = Object.fromEntries(
  Object.entries(PENDING).flatMap(([section, names]) =>
    names.split(' ').map((name) => [
      name,
      anytime(() => {
        throw new ServiceError(`not implemented yet: ${name} (${section})`);
      }),
    ]),
  ),
);
