//! The provider chain of a run, assembled by the policy stack's builder.

use super::*;

impl Ctx<'_> {
    /// One chain for this request: every member behind its request layers
    /// (budgets, retry), frames turned to JPEG for members that take JPEG,
    /// and the journal in front of the whole chain.
    pub(super) fn chain(&self, members: &[Member]) -> Arc<Journaled> {
        // JpegFrames converts RGB frames for exactly the members that do not
        // take them, whatever the extraction made.
        let journal: Arc<Journal> = self.gateway.journal.clone();
        let ledger = journal.clone();
        // Queued on the journal's thread, ahead of the reservation's release.
        let account = self.account.clone();
        let on_spend: SpendHook =
            Arc::new(move |provider: &str, usd: f64| ledger.queue_spend_for(provider, usd, account.as_deref()));
        let stack = policy::Stack::new(&self.gateway.config, self.budgets.clone(), self.log.clone()).on_spend(on_spend);
        let members = members.iter().map(|m| (m.shared.clone(), self.gateway.breaker(&m.name)));
        let progress = self.progress.clone();
        let budget = self.budgets[0].clone();
        Arc::new(
            stack.journaled(members, journal, self.video_hash.clone()).counting_unsaved(self.unsaved.clone()).on_unit(
                Arc::new(move |provider: &str, reused: bool| {
                    emit(
                        progress.as_ref(),
                        Progress::Unit { provider: provider.to_string(), reused, spent_usd: budget.spent() },
                    );
                }),
            ),
        )
    }
}
