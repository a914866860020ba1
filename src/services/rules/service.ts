import type { Store } from '../../store/store.js';
import type { AccountService } from '../accounts.js';

/** Account Automated Rules (spec section "Automated Rule Management"). */
export class RuleService {
  constructor(
    private readonly store: Store,
    private readonly accounts: AccountService,
  ) {}
}
