import type { Store } from '../store/store.js';
import type { AccountService } from './accounts.js';

/** Account datasets (spec section "Datasets"). */
export class DatasetService {
  constructor(
    private readonly store: Store,
    private readonly accounts: AccountService,
  ) {}
}
